package delta

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sync"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	deltaenc "github.com/parquet-go/parquet-go/encoding/delta"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/schema"
)

// BronzeWriter writes a bronze Parquet file in memory, column by column,
// straight from the batches' readings: no row structs, no reflection.
// Everything Parquet-specific is parquet-go's (the schema, taken from the file
// its writer makes for schema.BronzeRow; the DELTA_BINARY_PACKED encoder;
// the zstd codec; the thrift page headers and footer); this type only lays
// out the pages and chunks. Through parquet-go's row writer, bronze cost 111
// ns per reading, ~15 % of the collector at full load; this way it costs
// ~30 CPU ns and 0.82 bytes a reading (BenchmarkBronzeEncode; 39-42 ns and
// 0.90 bytes with the BYTE_STREAM_SPLIT doubles and v2 pages it used to
// write, which released Spark cannot read; 59 ns and 1.87 bytes with PLAIN
// doubles).
//
// The file has bronze's schema (taken from schema.BronzeRow through
// parquet-go, see bronzeFileTemplate) and one row group. The columns that
// are the same in every reading of a batch (device, boot, seq, received_at,
// source) are dictionary-encoded: a batch costs a map look-up and adds one
// run to an RLE_DICTIONARY page, whatever its size. ts, temp_c, pressure_pa,
// humidity_rh and fresh are buffered for a page (bronzePageRows readings) and
// encoded then: ts as DELTA_BINARY_PACKED unless compatible is set (PLAIN
// then); the doubles dictionary-encoded (bit-packed indexes; a reading's
// doubles come from small integers, so a file's distinct values are few)
// until a column's dictionary holds floatDictMax values, PLAIN after that;
// fresh PLAIN (compatible files hold only PLAIN and dictionary encodings). Every
// encoding used is one Apache Spark 3.3+'s vectorized reader and Databricks
// Runtime 13.3+ decode (no BYTE_STREAM_SPLIT: released Spark cannot read
// it). Pages are v1 data pages (PROTOCOL.md: writers SHOULD use DataPageV1
// for tables other engines read), compressed with zstd (the fastest level,
// the codec DefaultCompression shares). pressure_pa and humidity_rh are
// optional (a batch flagged wire.FlagNoPressure or FlagNoHumidity has
// nulls there): their pages start with the definition levels (RLE runs, a
// run per batch at most) and hold the present values only. The other
// columns are required: their pages hold no levels. The pages carry no
// statistics: the writer keeps the file's bounds itself, for Stats().
type BronzeWriter struct {
	compatible bool
	n          int64 // readings written
	err        error
	page       *bronzePage // the readings of the page being built; nil when none
	cols       [numBronzeColumns]bronzeChunk
	dicts      [numBronzeColumns]*bronzeDict // for the dictionary columns
	fdicts     [numBronzeColumns]*floatDict  // for the doubles, while they fit
	lastDev    string                        // the device of the previous batch and its index in dicts
	lastDevIdx uint32
	lastSrc    string // the same for the source
	lastSrcIdx uint32

	// Bounds of the readings written (the file's statistics). The
	// per-reading columns are kept in the wire's integer units:
	// converting them to floats is monotonic.
	tsLo, tsHi       int64
	tempLo, tempHi   int32
	pressLo, pressHi uint32 // over the present values: MaxUint32, 0 while none
	humLo, humHi     uint32
	pressNulls       int64 // readings without pressure
	humNulls         int64
	devLo, devHi     string
	srcLo, srcHi     string
	bootLo, bootHi   int64
	seqLo, seqHi     int64
	recvLo, recvHi   int64

	scratch, compressed []byte   // page encoding buffers
	idx                 []uint32 // a page's dictionary indexes
	closed              bool
	data                []byte // the file, once closed
}

// The columns of bronze, in schema order, and their indexes.
var bronzeColumns = [...]string{"device", "ts", "temp_c", "pressure_pa", "humidity_rh", "fresh", "boot", "seq", "received_at", "source"}

const (
	colDevice = iota
	colTS
	colTemp
	colPress
	colHum
	colFresh
	colBoot
	colSeq
	colRecv
	colSource
	numBronzeColumns
)

// bronzePageRows is the number of readings after which a page is written
// (whole batches: a page may hold a batch more): double pages of 512 KiB.
const bronzePageRows = 1 << 16

// bronzePage holds the per-reading columns of the page being built and the
// dictionary runs of the others. Pages are pooled: a writer holds one only
// while it is written to.
type bronzePage struct {
	rows             int
	ts               []int64
	temp, press, hum []float64 // press and hum: the present values only
	fresh            []byte    // bit-packed, least significant bit first (PLAIN booleans)
	runs             [numBronzeColumns][]bronzeRun
	defs             [numBronzeColumns][]bronzeRun // of the optional columns: definition levels (idx 0 null, 1 present)
}

// bronzeRun is a run of equal dictionary indexes.
type bronzeRun struct{ idx, n uint32 }

var bronzePages = sync.Pool{New: func() any {
	return &bronzePage{ts: make([]int64, 0, bronzePageRows+1024), temp: make([]float64, 0, bronzePageRows+1024),
		press: make([]float64, 0, bronzePageRows+1024), hum: make([]float64, 0, bronzePageRows+1024),
		fresh: make([]byte, 0, (bronzePageRows+1024)/8+1)}
}}

// bronzeDict is a column's dictionary: its values, PLAIN-encoded, and their
// indexes.
type bronzeDict struct {
	plain []byte
	n     uint32
	str   map[string]uint32
	i64   map[int64]uint32
	last  int64 // the int64 value last looked up and its index (ints repeat across batches)
	lastI uint32
	any   bool
}

func (d *bronzeDict) string(s string) uint32 {
	if i, ok := d.str[s]; ok {
		return i
	}
	i := d.n
	d.n++
	d.str[s] = i
	d.plain = binary.LittleEndian.AppendUint32(d.plain, uint32(len(s)))
	d.plain = append(d.plain, s...)
	return i
}

func (d *bronzeDict) int64(v int64) uint32 {
	if d.any && v == d.last {
		return d.lastI
	}
	i, ok := d.i64[v]
	if !ok {
		i = d.n
		d.n++
		d.i64[v] = i
		d.plain = binary.LittleEndian.AppendUint64(d.plain, uint64(v))
	}
	d.last, d.lastI, d.any = v, i, true
	return i
}

// bronzeChunk is a column chunk being written: its data pages, compressed,
// with their headers.
type bronzeChunk struct {
	pages        [][]byte // each a page header and its compressed body
	size         int      // of pages
	uncompressed int64    // of the pages, headers included
	numPages     int32
	plainPages   int32 // of a dictionary column: pages written PLAIN (its dictionary was full)
}

// floatDict is a double column's dictionary: its values' bits, in index
// order, and an open-addressing table from bits to index+1. It holds at
// most floatDictMax values; past that the column's pages are PLAIN.
type floatDict struct {
	vals  []uint64
	table []uint32
	full  bool
}

const (
	floatDictMax   = 1 << 14 // values; indexes of at most 14 bits
	floatDictSlots = 1 << 16 // table slots: a load of at most 1/4
)

func newFloatDict() *floatDict { return &floatDict{table: make([]uint32, floatDictSlots)} }

// indexes maps a page's values to dictionary indexes (adding new values),
// into idx. It returns false, leaving the dictionary full, when they do
// not all fit: the page is written PLAIN.
func (d *floatDict) indexes(v []float64, idx []uint32) bool {
	if d.full {
		return false
	}
	var last uint64
	var lastI uint32
	have := false
	for i, f := range v {
		b := math.Float64bits(f)
		if have && b == last {
			idx[i] = lastI
			continue
		}
		h := uint32((b * 0x9E3779B97F4A7C15) >> (64 - 16))
		for {
			e := d.table[h]
			if e == 0 {
				if len(d.vals) >= floatDictMax {
					d.full = true
					return false
				}
				d.vals = append(d.vals, b)
				e = uint32(len(d.vals))
				d.table[h] = e
			}
			if d.vals[e-1] == b {
				idx[i] = e - 1
				break
			}
			h = (h + 1) & (floatDictSlots - 1)
		}
		last, lastI, have = b, idx[i], true
	}
	return true
}

// plain returns the dictionary page's body: the values, PLAIN.
func (d *floatDict) plain() []byte {
	out := make([]byte, 0, 8*len(d.vals))
	for _, b := range d.vals {
		out = binary.LittleEndian.AppendUint64(out, b)
	}
	return out
}

// appendBitPacked appends an RLE_DICTIONARY page body of indexes below n:
// the bit width, then one bit-packed run (RLE/bit-packing hybrid) of all
// the indexes, padded to a multiple of 8 with zeros.
func appendBitPacked(b []byte, idx []uint32, n int) []byte {
	width := max(1, bits.Len32(uint32(n-1)))
	b = append(b, byte(width))
	groups := (len(idx) + 7) / 8
	b = binary.AppendUvarint(b, uint64(groups)<<1|1)
	var acc uint64
	var nb int
	for i := range groups * 8 {
		var v uint32
		if i < len(idx) {
			v = idx[i]
		}
		acc |= uint64(v) << nb
		nb += width
		for nb >= 8 {
			b = append(b, byte(acc))
			acc >>= 8
			nb -= 8
		}
	}
	return b
}

// NewBronzeWriter starts a bronze file. See BronzeWriter for compatible.
func NewBronzeWriter(compatible bool) *BronzeWriter {
	bw := &BronzeWriter{compatible: compatible, pressLo: math.MaxUint32, humLo: math.MaxUint32}
	for _, c := range []int{colDevice, colSource} {
		bw.dicts[c] = &bronzeDict{str: map[string]uint32{}}
	}
	for _, c := range []int{colBoot, colSeq, colRecv} {
		bw.dicts[c] = &bronzeDict{i64: map[int64]uint32{}}
	}
	for _, c := range []int{colTemp, colPress, colHum} {
		bw.fdicts[c] = newFloatDict()
	}
	return bw
}

// Write appends a batch's readings, each with tmpl's device, boot, seq,
// received_at and source, and with pressure and humidity.
func (bw *BronzeWriter) Write(rs []wire.Reading, tmpl *schema.BronzeRow) {
	bw.WriteFlags(rs, tmpl, 0)
}

// WriteFlags is Write of a batch with wire flags flags: pressure is null
// when they hold wire.FlagNoPressure, humidity when wire.FlagNoHumidity.
func (bw *BronzeWriter) WriteFlags(rs []wire.Reading, tmpl *schema.BronzeRow, flags uint8) {
	if bw.err != nil || len(rs) == 0 {
		return
	}
	if bw.closed {
		bw.err = fmt.Errorf("writing to a closed bronze file")
		return
	}
	if bw.page == nil {
		bw.page = bronzePages.Get().(*bronzePage)
	}
	pg := bw.page
	first := bw.n == 0
	if first {
		r := &rs[0]
		bw.tsLo, bw.tsHi = r.TimeUS, r.TimeUS
		bw.tempLo, bw.tempHi = r.Temp, r.Temp
		bw.devLo, bw.devHi = tmpl.Device, tmpl.Device
		bw.srcLo, bw.srcHi = tmpl.Source, tmpl.Source
		bw.bootLo, bw.bootHi = tmpl.Boot, tmpl.Boot
		bw.seqLo, bw.seqHi = tmpl.Seq, tmpl.Seq
		bw.recvLo, bw.recvHi = tmpl.ReceivedAt, tmpl.ReceivedAt
	}

	// Per-reading columns.
	k, n := pg.rows, len(rs)
	hasP, hasH := flags&wire.FlagNoPressure == 0, flags&wire.FlagNoHumidity == 0
	pg.ts = slices.Grow(pg.ts, n)[:k+n]
	pg.temp = slices.Grow(pg.temp, n)[:k+n]
	ts, temp := pg.ts[k:k+n], pg.temp[k:k+n]
	tsLo, tsHi := bw.tsLo, bw.tsHi
	tLo, tHi := bw.tempLo, bw.tempHi
	pLo, pHi := bw.pressLo, bw.pressHi
	hLo, hHi := bw.humLo, bw.humHi
	if hasP && hasH { // a BME280's batch: one pass
		kp, kh := len(pg.press), len(pg.hum)
		pg.press = slices.Grow(pg.press, n)[:kp+n]
		pg.hum = slices.Grow(pg.hum, n)[:kh+n]
		press, hum := pg.press[kp:kp+n], pg.hum[kh:kh+n]
		for i := range rs {
			r := &rs[i]
			ts[i], temp[i], press[i], hum[i] = r.TimeUS, r.TempC(), r.PressurePa(), r.HumidityRH()
			tsLo, tsHi = min(tsLo, r.TimeUS), max(tsHi, r.TimeUS)
			tLo, tHi = min(tLo, r.Temp), max(tHi, r.Temp)
			pLo, pHi = min(pLo, r.Press), max(pHi, r.Press)
			hLo, hHi = min(hLo, r.Hum), max(hHi, r.Hum)
		}
	} else {
		for i := range rs {
			r := &rs[i]
			ts[i], temp[i] = r.TimeUS, r.TempC()
			tsLo, tsHi = min(tsLo, r.TimeUS), max(tsHi, r.TimeUS)
			tLo, tHi = min(tLo, r.Temp), max(tHi, r.Temp)
		}
		if hasP {
			for i := range rs {
				r := &rs[i]
				pg.press = append(pg.press, r.PressurePa())
				pLo, pHi = min(pLo, r.Press), max(pHi, r.Press)
			}
		} else {
			bw.pressNulls += int64(n)
		}
		if hasH {
			for i := range rs {
				r := &rs[i]
				pg.hum = append(pg.hum, r.HumidityRH())
				hLo, hHi = min(hLo, r.Hum), max(hHi, r.Hum)
			}
		} else {
			bw.humNulls += int64(n)
		}
	}
	pg.addDef(colPress, hasP, n)
	pg.addDef(colHum, hasH, n)
	bw.tsLo, bw.tsHi, bw.tempLo, bw.tempHi = tsLo, tsHi, tLo, tHi
	bw.pressLo, bw.pressHi, bw.humLo, bw.humHi = pLo, pHi, hLo, hHi
	pg.fresh = slices.Grow(pg.fresh, n/8+2)[:(k+n+7)/8]
	fresh := pg.fresh
	for i := range rs {
		if rs[i].Fresh {
			j := k + i
			fresh[j>>3] |= 1 << (j & 7)
		}
	}

	// Per-batch columns.
	if first || tmpl.Device != bw.lastDev {
		bw.lastDev, bw.lastDevIdx = tmpl.Device, bw.dicts[colDevice].string(tmpl.Device)
		bw.devLo, bw.devHi = min(bw.devLo, tmpl.Device), max(bw.devHi, tmpl.Device)
	}
	pg.addRun(colDevice, bw.lastDevIdx, n)
	if first || tmpl.Source != bw.lastSrc {
		bw.lastSrc, bw.lastSrcIdx = tmpl.Source, bw.dicts[colSource].string(tmpl.Source)
		bw.srcLo, bw.srcHi = min(bw.srcLo, tmpl.Source), max(bw.srcHi, tmpl.Source)
	}
	pg.addRun(colSource, bw.lastSrcIdx, n)
	bw.bootLo, bw.bootHi = min(bw.bootLo, tmpl.Boot), max(bw.bootHi, tmpl.Boot)
	bw.seqLo, bw.seqHi = min(bw.seqLo, tmpl.Seq), max(bw.seqHi, tmpl.Seq)
	bw.recvLo, bw.recvHi = min(bw.recvLo, tmpl.ReceivedAt), max(bw.recvHi, tmpl.ReceivedAt)
	pg.addRun(colBoot, bw.dicts[colBoot].int64(tmpl.Boot), n)
	pg.addRun(colSeq, bw.dicts[colSeq].int64(tmpl.Seq), n)
	pg.addRun(colRecv, bw.dicts[colRecv].int64(tmpl.ReceivedAt), n)

	pg.rows += n
	bw.n += int64(n)
	if pg.rows >= bronzePageRows {
		bw.flushPage()
	}
}

// addDef adds n definition levels (1: present, 0: null) to an optional column.
func (pg *bronzePage) addDef(col int, present bool, n int) {
	var lvl uint32
	if present {
		lvl = 1
	}
	defs := pg.defs[col]
	if l := len(defs) - 1; l >= 0 && defs[l].idx == lvl {
		defs[l].n += uint32(n)
		return
	}
	pg.defs[col] = append(defs, bronzeRun{idx: lvl, n: uint32(n)})
}

func (pg *bronzePage) addRun(col int, idx uint32, n int) {
	runs := pg.runs[col]
	if l := len(runs) - 1; l >= 0 && runs[l].idx == idx {
		runs[l].n += uint32(n)
		return
	}
	pg.runs[col] = append(runs, bronzeRun{idx: idx, n: uint32(n)})
}

// flushPage encodes and compresses the page being built, a data page per
// column.
func (bw *BronzeWriter) flushPage() {
	pg := bw.page
	if pg == nil || pg.rows == 0 || bw.err != nil {
		return
	}
	rows := pg.rows
	for c := range bronzeColumns {
		var enc format.Encoding
		body := bw.scratch[:0]
		switch c {
		case colTS:
			if bw.compatible {
				enc, body = format.Plain, append(body, le64(pg.ts)...)
			} else {
				enc = format.DeltaBinaryPacked
				body, _ = new(deltaenc.BinaryPackedEncoding).EncodeInt64(body, pg.ts)
			}
		case colTemp, colPress, colHum:
			v := pg.temp
			if c == colPress {
				v = pg.press
			} else if c == colHum {
				v = pg.hum
			}
			if c != colTemp {
				body = appendDefLevels(body, pg.defs[c])
			}
			bw.idx = slices.Grow(bw.idx[:0], len(v))[:len(v)]
			if d := bw.fdicts[c]; len(v) > 0 && d.indexes(v, bw.idx) {
				enc, body = format.RLEDictionary, appendBitPacked(body, bw.idx, len(d.vals))
			} else {
				enc, body = format.Plain, append(body, le64(v)...)
				bw.cols[c].plainPages++
			}
		case colFresh:
			enc, body = format.Plain, append(body, pg.fresh...)
		default:
			enc, body = format.RLEDictionary, appendRuns(body, pg.runs[c])
		}
		bw.scratch = body
		bw.writePage(&bw.cols[c], format.DataPage, enc, rows, body)
		if bw.err != nil {
			return
		}
	}
	pg.rows = 0
	pg.ts, pg.temp, pg.press, pg.hum = pg.ts[:0], pg.temp[:0], pg.press[:0], pg.hum[:0]
	clear(pg.fresh)
	pg.fresh = pg.fresh[:0]
	for c := range pg.runs {
		pg.runs[c] = pg.runs[c][:0]
		pg.defs[c] = pg.defs[c][:0]
	}
}

// appendDefLevels appends a v1 data page's definition levels of a flat
// optional column: their length (4 bytes, little-endian), then one RLE run
// (bit width 1) per bronzeRun.
func appendDefLevels(b []byte, runs []bronzeRun) []byte {
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	for _, r := range runs {
		b = binary.AppendUvarint(b, uint64(r.n)<<1)
		b = append(b, byte(r.idx))
	}
	binary.LittleEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}

// appendRuns appends an RLE_DICTIONARY page body: the bit width of the
// indexes, then a run per bronzeRun (RLE/bit-packing hybrid, RLE runs only).
func appendRuns(b []byte, runs []bronzeRun) []byte {
	var hi uint32
	for _, r := range runs {
		hi = max(hi, r.idx)
	}
	width := max(1, bits.Len32(hi))
	b = append(b, byte(width))
	nb := (width + 7) / 8
	for _, r := range runs {
		b = binary.AppendUvarint(b, uint64(r.n)<<1)
		for i := range nb {
			b = append(b, byte(r.idx>>(8*i)))
		}
	}
	return b
}

// le64 is the PLAIN encoding of s: its in-memory bytes on a little-endian
// machine (every platform pilake is built for), else a byte-swapped copy.
func le64[T int64 | float64](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*8)
	if littleEndian {
		return b
	}
	out := make([]byte, len(b))
	for i := range s {
		binary.LittleEndian.PutUint64(out[8*i:], binary.NativeEndian.Uint64(b[8*i:]))
	}
	return out
}

// littleEndian reports the machine's byte order.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// writePage compresses body and appends it to ch with its header.
func (bw *BronzeWriter) writePage(ch *bronzeChunk, typ format.PageType, enc format.Encoding, n int, body []byte) {
	var err error
	bw.compressed, err = zstdFastest.Encode(bw.compressed[:0], body)
	if err != nil {
		bw.err = err
		return
	}
	h := format.PageHeader{Type: typ, UncompressedPageSize: int32(len(body)), CompressedPageSize: int32(len(bw.compressed))}
	switch typ {
	case format.DictionaryPage:
		h.DictionaryPageHeader = thrift.New(format.DictionaryPageHeader{NumValues: int32(n), Encoding: enc})
	default:
		h.DataPageHeader = thrift.New(format.DataPageHeader{NumValues: int32(n), Encoding: enc,
			DefinitionLevelEncoding: format.RLE, RepetitionLevelEncoding: format.RLE})
	}
	hdr, err := thrift.Marshal(new(thrift.CompactProtocol), &h)
	if err != nil {
		bw.err = err
		return
	}
	page := make([]byte, 0, len(hdr)+len(bw.compressed))
	ch.pages = append(ch.pages, append(append(page, hdr...), bw.compressed...))
	ch.size += len(ch.pages[len(ch.pages)-1])
	ch.uncompressed += int64(len(hdr) + len(body))
	ch.numPages++
}

// bronzeFileTemplate is the metadata parquet-go writes for a bronze file
// with no rows: its schema elements, column orders, version and created_by
// are those of every bronze file.
var bronzeFileTemplate = sync.OnceValues(func() (*format.FileMetaData, error) {
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[schema.BronzeRow](&buf, parquet.CreatedBy("pilake", "1", ""))
	if err := w.Close(); err != nil {
		return nil, err
	}
	f, err := OpenParquet(buf.Bytes())
	if err != nil {
		return nil, err
	}
	return f.Metadata(), nil
})

// Stats returns the Delta statistics of the file written.
func (bw *BronzeWriter) Stats() Stats {
	vals := func(dev, src string, ts int64, temp int32, press, hum uint32, boot, seq, recv int64) map[string]any {
		r := wire.Reading{Temp: temp, Press: press, Hum: hum}
		m := map[string]any{"device": dev, "ts": FormatStatsTime(ts), "temp_c": r.TempC(),
			"boot": boot, "seq": seq, "received_at": FormatStatsTime(recv), "source": src}
		if bw.pressNulls < bw.n { // a bound only of present values
			m["pressure_pa"] = r.PressurePa()
		}
		if bw.humNulls < bw.n {
			m["humidity_rh"] = r.HumidityRH()
		}
		return m
	}
	nulls := map[string]int64{}
	for _, c := range bronzeColumns {
		nulls[c] = 0
	}
	nulls["pressure_pa"], nulls["humidity_rh"] = bw.pressNulls, bw.humNulls
	return Stats{NumRecords: bw.n,
		MinValues: vals(bw.devLo, bw.srcLo, bw.tsLo, bw.tempLo, bw.pressLo, bw.humLo, bw.bootLo, bw.seqLo, bw.recvLo),
		MaxValues: vals(bw.devHi, bw.srcHi, bw.tsHi, bw.tempHi, bw.pressHi, bw.humHi, bw.bootHi, bw.seqHi, bw.recvHi),
		NullCount: nulls}
}

// Close finishes the file and returns it. Calling it again returns the same
// file.
func (bw *BronzeWriter) Close() ([]byte, error) {
	if bw.err == nil && !bw.closed {
		bw.flushPage()
		if bw.page != nil && bw.err == nil { // flushed: empty again
			bronzePages.Put(bw.page)
		}
		bw.page = nil
		bw.closed = true
		if bw.err == nil {
			bw.data, bw.err = bw.assemble()
		}
		bw.scratch, bw.compressed = nil, nil
	}
	if bw.err != nil {
		return nil, fmt.Errorf("encoding bronze: %w", bw.err)
	}
	return bw.data, nil
}

// Rows returns the number of readings written.
func (bw *BronzeWriter) Rows() int64 { return bw.n }

// assemble lays the column chunks out in a file and appends the footer.
func (bw *BronzeWriter) assemble() ([]byte, error) {
	tmpl, err := bronzeFileTemplate()
	if err != nil {
		return nil, err
	}
	size := 4
	for c := range bw.cols {
		size += bw.cols[c].size
		if d := bw.dicts[c]; d != nil {
			size += len(d.plain) + 64
		}
	}
	out := make([]byte, 0, size+4096)
	out = append(out, "PAR1"...)
	meta := format.FileMetaData{Version: tmpl.Version, Schema: tmpl.Schema, NumRows: bw.n, CreatedBy: tmpl.CreatedBy,
		ColumnOrders: tmpl.ColumnOrders, KeyValueMetadata: tmpl.KeyValueMetadata}
	if bw.n > 0 {
		rg := format.RowGroup{NumRows: bw.n, FileOffset: int64(len(out))}
		leaves := tmpl.Schema[1:]
		for c, name := range bronzeColumns {
			ch := &bw.cols[c]
			md := format.ColumnMetaData{Type: leaves[c].Type.V, PathInSchema: []string{name}, Codec: zstdFastest.CompressionCodec(), NumValues: bw.n}
			start := int64(len(out))
			var uncompressed int64
			var dataEnc format.Encoding
			if fd := bw.fdicts[c]; fd != nil && len(fd.vals) > 0 {
				var dict bronzeChunk
				bw.writePage(&dict, format.DictionaryPage, format.Plain, len(fd.vals), fd.plain())
				if bw.err != nil {
					return nil, bw.err
				}
				md.DictionaryPageOffset = start
				out = append(out, dict.pages[0]...)
				uncompressed += dict.uncompressed
				md.Encoding = []format.Encoding{format.Plain, format.RLEDictionary}
				md.EncodingStats = []format.PageEncodingStats{{PageType: format.DictionaryPage, Encoding: format.Plain, Count: 1}}
				if ch.plainPages > 0 {
					md.EncodingStats = append(md.EncodingStats, format.PageEncodingStats{PageType: format.DataPage, Encoding: format.Plain, Count: ch.plainPages})
				}
				ch.numPages -= ch.plainPages
				dataEnc = format.RLEDictionary
			} else if d := bw.dicts[c]; d != nil {
				var dict bronzeChunk
				bw.writePage(&dict, format.DictionaryPage, format.Plain, int(d.n), d.plain)
				if bw.err != nil {
					return nil, bw.err
				}
				md.DictionaryPageOffset = start
				out = append(out, dict.pages[0]...)
				uncompressed += dict.uncompressed
				md.Encoding = []format.Encoding{format.Plain, format.RLEDictionary}
				md.EncodingStats = []format.PageEncodingStats{{PageType: format.DictionaryPage, Encoding: format.Plain, Count: 1}}
				dataEnc = format.RLEDictionary
			} else {
				dataEnc = format.Plain
				if c == colTS && !bw.compatible {
					dataEnc = format.DeltaBinaryPacked
				}
				md.Encoding = []format.Encoding{dataEnc}
			}
			md.DataPageOffset = int64(len(out))
			if ch.numPages > 0 {
				md.EncodingStats = append(md.EncodingStats, format.PageEncodingStats{PageType: format.DataPage, Encoding: dataEnc, Count: ch.numPages})
			}
			for _, p := range ch.pages {
				out = append(out, p...)
			}
			md.TotalUncompressedSize = uncompressed + ch.uncompressed
			md.TotalCompressedSize = int64(len(out)) - start
			rg.TotalByteSize += md.TotalUncompressedSize
			rg.TotalCompressedSize += md.TotalCompressedSize
			rg.Columns = append(rg.Columns, format.ColumnChunk{FileOffset: start, MetaData: md})
			ch.pages = nil
		}
		meta.RowGroups = []format.RowGroup{rg}
	}
	footer, err := thrift.Marshal(new(thrift.CompactProtocol), &meta)
	if err != nil {
		return nil, err
	}
	out = append(out, footer...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(footer)))
	return append(out, "PAR1"...), nil
}
