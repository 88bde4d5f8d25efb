package stages

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"reflect"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// bronzeInput is a bronze file's input: batches (readings and template row).
type bronzeInput struct {
	readings [][]wire.Reading
	tmpls    []schema.BronzeRow
	flags    []uint8 // per batch; nil: all 0
}

func (in bronzeInput) flag(k int) uint8 {
	if in.flags == nil {
		return 0
	}
	return in.flags[k]
}

// rows are the bronze rows the input stands for, built as the row-based
// encoder did.
func (in bronzeInput) rows() []schema.BronzeRow {
	var rows []schema.BronzeRow
	for k, rs := range in.readings {
		for _, r := range rs {
			row := in.tmpls[k]
			row.TS, row.TempC, row.Fresh = r.TimeUS, r.TempC(), r.Fresh
			if in.flag(k)&wire.FlagNoPressure == 0 {
				row.PressurePa = schema.Float(r.PressurePa())
			}
			if in.flag(k)&wire.FlagNoHumidity == 0 {
				row.HumidityRH = schema.Float(r.HumidityRH())
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// encode writes the input through encodeBronze, as the pipeline does, and
// returns the writer, closed, and its file.
func (in bronzeInput) encode(t testing.TB, compatible bool) (*delta.BronzeWriter, []byte) {
	t.Helper()
	jobs := make(chan bronzeJob, len(in.readings)+1)
	var released []*wire.Batch
	bw := delta.NewBronzeWriter(compatible)
	for k := range in.readings {
		b := &wire.Batch{}
		jobs <- bronzeJob{readings: in.readings[k], tmpl: in.tmpls[k], flags: in.flag(k), batch: b}
	}
	reply := make(chan *delta.BronzeWriter, 1)
	jobs <- bronzeJob{cut: reply, next: delta.NewBronzeWriter(compatible)}
	close(jobs)
	encodeBronze(jobs, bw, func(b *wire.Batch) { released = append(released, b) })
	if got := <-reply; got != bw {
		t.Fatal("the cut did not hand over the writer written to")
	}
	if len(released) != len(in.readings) {
		t.Fatalf("%d batches released, want %d", len(released), len(in.readings))
	}
	data, err := bw.Close()
	if err != nil {
		t.Fatal(err)
	}
	return bw, data
}

// testBronzeInputs are inputs with what the encoder must get right: fresh
// flags mixed within a batch, batches of one reading and of thousands
// (pages end inside and between batches), more than 256 devices (two-byte
// dictionary indexes), both sources, boot ids with the top bit set
// (negative int64), repeated and extreme values, NaN-free negative
// temperatures.
func testBronzeInputs() map[string]bronzeInput {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMicro()
	small := bronzeInput{
		readings: [][]wire.Reading{
			{{TimeUS: t0, Temp: -4012, Press: 101325 * 256, Hum: 0, Fresh: true}, {TimeUS: t0 + 2500, Temp: 8500, Press: math.MaxUint32, Hum: 100 * 1024}, {TimeUS: t0 + 1, Temp: 0, Press: 1, Hum: 3, Fresh: true}},
			{{TimeUS: t0 - 7, Temp: math.MinInt32, Press: 0, Hum: math.MaxUint32, Fresh: false}},
			{{TimeUS: math.MaxInt64, Temp: math.MaxInt32, Press: 5, Hum: 7, Fresh: true}},
		},
		tmpls: []schema.BronzeRow{
			{Device: "dev-b", Boot: -1, Seq: 1, ReceivedAt: t0 + 10, Source: "mqtt"},
			{Device: "dev-a", Boot: math.MinInt64, Seq: 1 << 40, ReceivedAt: t0 - 10, Source: "iothub"},
			{Device: "dev-b", Boot: -1, Seq: 2, ReceivedAt: t0 + 10, Source: "mqtt"},
		},
	}
	var big bronzeInput
	sizes := []int{1, 400, 4000, 37, 65536, 3}
	for k := range 700 {
		n := sizes[k%len(sizes)]
		if k >= 12 && n > 400 {
			n = 400
		}
		rs := make([]wire.Reading, n)
		for i := range rs {
			m := k*1000 + i
			rs[i] = wire.Reading{TimeUS: t0 + int64(k)*1_000_000 + int64(i)*2500 + int64(m%7), Temp: int32(2150 + m%301 - 150),
				Press: uint32(101325*256 + m%977), Hum: uint32(45*1024 + m%1031), Fresh: (m*7)%5 < 2}
		}
		big.readings = append(big.readings, rs)
		src := "mqtt"
		if k%9 == 0 {
			src = "iothub"
		}
		big.tmpls = append(big.tmpls, schema.BronzeRow{Device: fmt.Sprintf("dev-%04d", (k*37)%311), Boot: int64(uint64(k%5) << 62), Seq: int64(k / 311),
			ReceivedAt: t0 + int64(k)*1_000_000 + 5000, Source: src})
	}
	// More distinct values than a double column's dictionary holds: its
	// first pages are dictionary-encoded, the later ones PLAIN.
	var wide bronzeInput
	for k := range 5 {
		rs := make([]wire.Reading, 30000)
		for i := range rs {
			m := k*30000 + i
			press := uint32(m % 1000) // the first page's: 1,000 values
			if k >= 3 {
				press = uint32(m * 7) // the second page's: 60,000 more
			}
			rs[i] = wire.Reading{TimeUS: t0 + int64(m)*2500, Temp: int32(m % 500), Press: press, Hum: uint32(m % 3), Fresh: m%3 == 0}
		}
		wide.readings = append(wide.readings, rs)
		wide.tmpls = append(wide.tmpls, schema.BronzeRow{Device: "dev-w", Boot: 1, Seq: int64(k), ReceivedAt: t0, Source: "mqtt"})
	}
	// Batches without pressure and/or humidity (the simulator's, a BMP280's)
	// among BME280 ones: null runs within and across pages, a page (the
	// 65,536-reading batch's) with no pressure at all, a file whose
	// humidity starts null.
	var nulls bronzeInput
	nsizes := []int{3, 400, 65536, 1, 700, 2}
	nflags := []uint8{wire.FlagNoHumidity, 0, wire.FlagNoPressure, wire.FlagNoPressure | wire.FlagNoHumidity, wire.FlagNoPressure, 0}
	for k := range 30 {
		n := nsizes[k%len(nsizes)]
		if k >= 6 && n > 700 {
			n = 700
		}
		rs := make([]wire.Reading, n)
		for i := range rs {
			m := k*1000 + i
			rs[i] = wire.Reading{TimeUS: t0 + int64(k)*1_000_000 + int64(i)*2500, Temp: int32(2150 + m%301 - 150),
				Press: uint32(101325*256 + m%977), Hum: uint32(45*1024 + m%1031), Fresh: m%4 == 0}
		}
		nulls.readings = append(nulls.readings, rs)
		nulls.flags = append(nulls.flags, nflags[k%len(nflags)])
		nulls.tmpls = append(nulls.tmpls, schema.BronzeRow{Device: fmt.Sprintf("dev-%d", k%3), Boot: 7, Seq: int64(k + 1), ReceivedAt: t0, Source: "iothub"})
	}
	// No pressure anywhere: the column is all null.
	nopress := bronzeInput{readings: nulls.readings[:4], tmpls: nulls.tmpls[:4],
		flags: []uint8{wire.FlagNoPressure, wire.FlagNoPressure | wire.FlagNoHumidity, wire.FlagNoPressure, wire.FlagNoPressure}}
	return map[string]bronzeInput{"small": small, "big": big, "wide": wide, "nulls": nulls, "nopress": nopress}
}

// TestBronzeRoundTrip encodes inputs in both modes and reads the files back
// with parquet-go (directly and through the Delta reader) and with Apache
// Arrow's Go reader: every row must come back as it went in, the schema
// must be schema.BronzeRow's, every file must pass delta.CheckPortable
// (DataPageV1; PLAIN, dictionary, DELTA_BINARY_PACKED), a compatible file
// must hold only PLAIN and dictionary encodings, and Stats() must be the
// input's bounds.
func TestBronzeRoundTrip(t *testing.T) {
	for name, in := range testBronzeInputs() {
		for _, compatible := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/compatible=%v", name, compatible), func(t *testing.T) {
				want := in.rows()
				bw, data := in.encode(t, compatible)
				if bw.Rows() != int64(len(want)) {
					t.Fatalf("writer counted %d rows, want %d", bw.Rows(), len(want))
				}

				f, err := delta.OpenParquet(data)
				if err != nil {
					t.Fatal(err)
				}
				if got, w := f.Schema().String(), parquet.SchemaOf(schema.BronzeRow{}).String(); got != w {
					t.Errorf("schema:\n%s\nwant\n%s", got, w)
				}
				checkBronzeSchemaElements(t, f.Metadata())
				checkBronzeEncodings(t, data, f.Metadata(), compatible)
				if name == "wide" { // pressure_pa: dictionary pages, then PLAIN once the dictionary is full
					var kinds []format.Encoding
					for _, es := range f.Metadata().RowGroups[0].Columns[3].MetaData.EncodingStats {
						if es.PageType == format.DataPage {
							kinds = append(kinds, es.Encoding)
						}
					}
					if !slices.Contains(kinds, format.Plain) || !slices.Contains(kinds, format.RLEDictionary) {
						t.Errorf("pressure_pa data pages %v, want dictionary and PLAIN ones", kinds)
					}
				}
				got, err := parquet.Read[schema.BronzeRow](bytes.NewReader(data), int64(len(data)))
				if err != nil {
					t.Fatal(err)
				}
				compareBronzeRows(t, "parquet-go", got, want)

				l := lake.NewMemory()
				if err := l.Put(context.Background(), "bronze/part-0.parquet", data); err != nil {
					t.Fatal(err)
				}
				got, err = delta.ReadFiles[schema.BronzeRow](context.Background(), l, "bronze", []delta.AddFile{{Path: "part-0.parquet"}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				compareBronzeRows(t, "delta.ReadFiles", got, want)

				compareBronzeRows(t, "arrow-go", readBronzeArrow(t, data), want)

				if got, w := bw.Stats(), bronzeStatsOf(want); !reflect.DeepEqual(got, w) {
					t.Errorf("Stats() = %+v\nwant %+v", got, w)
				}
			})
		}
	}
}

func compareBronzeRows(t *testing.T, reader string, got, want []schema.BronzeRow) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rows, want %d", reader, len(got), len(want))
		return
	}
	bad := 0
	for i := range want {
		if !sameBronzeRow(got[i], want[i]) {
			if bad++; bad <= 5 {
				t.Errorf("%s: row %d = %+v, want %+v", reader, i, got[i], want[i])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d rows differ", reader, bad, len(want))
	}
}

// sameBronzeRow compares rows by value (nullable columns are pointers).
func sameBronzeRow(a, b schema.BronzeRow) bool {
	same := func(x, y *float64) bool { return x == nil && y == nil || x != nil && y != nil && *x == *y }
	if !same(a.PressurePa, b.PressurePa) || !same(a.HumidityRH, b.HumidityRH) {
		return false
	}
	a.PressurePa, a.HumidityRH, b.PressurePa, b.HumidityRH = nil, nil, nil, nil
	return a == b
}

// checkBronzeSchemaElements compares the file's schema elements with those
// of a file parquet-go writes from schema.BronzeRow (the row-based encoder's).
func checkBronzeSchemaElements(t *testing.T, md *format.FileMetaData) {
	t.Helper()
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[schema.BronzeRow](&buf)
	if _, err := w.Write([]schema.BronzeRow{{Device: "d"}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ref, err := delta.OpenParquet(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := md.Schema, ref.Metadata().Schema; !reflect.DeepEqual(got, want) {
		t.Errorf("schema elements:\n%+v\nwant\n%+v", got, want)
	}
	if got, want := md.ColumnOrders, ref.Metadata().ColumnOrders; !reflect.DeepEqual(got, want) {
		t.Errorf("column orders %+v, want %+v", got, want)
	}
}

func checkBronzeEncodings(t *testing.T, data []byte, md *format.FileMetaData, compatible bool) {
	t.Helper()
	if err := delta.CheckPortable(data); err != nil {
		t.Errorf("bronze file (compatible=%v): %v", compatible, err)
	}
	for _, rg := range md.RowGroups {
		for _, c := range rg.Columns {
			for _, e := range c.MetaData.Encoding {
				switch e {
				case format.Plain, format.RLEDictionary, format.PlainDictionary:
				default:
					if compatible {
						t.Errorf("column %v: encoding %v in a compatible file", c.MetaData.PathInSchema, e)
					}
				}
			}
		}
	}
}

// bronzeStatsOf is the Delta statistics of rows, computed from the rows.
func bronzeStatsOf(rows []schema.BronzeRow) delta.Stats {
	lo, hi := rows[0], rows[0]
	var pLo, pHi, hLo, hHi *float64
	var pNull, hNull int64
	for _, r := range rows {
		lo.Device, hi.Device = min(lo.Device, r.Device), max(hi.Device, r.Device)
		lo.TS, hi.TS = min(lo.TS, r.TS), max(hi.TS, r.TS)
		lo.TempC, hi.TempC = min(lo.TempC, r.TempC), max(hi.TempC, r.TempC)
		if p := r.PressurePa; p == nil {
			pNull++
		} else if pLo == nil {
			pLo, pHi = schema.Float(*p), schema.Float(*p)
		} else {
			*pLo, *pHi = min(*pLo, *p), max(*pHi, *p)
		}
		if h := r.HumidityRH; h == nil {
			hNull++
		} else if hLo == nil {
			hLo, hHi = schema.Float(*h), schema.Float(*h)
		} else {
			*hLo, *hHi = min(*hLo, *h), max(*hHi, *h)
		}
		lo.Boot, hi.Boot = min(lo.Boot, r.Boot), max(hi.Boot, r.Boot)
		lo.Seq, hi.Seq = min(lo.Seq, r.Seq), max(hi.Seq, r.Seq)
		lo.ReceivedAt, hi.ReceivedAt = min(lo.ReceivedAt, r.ReceivedAt), max(hi.ReceivedAt, r.ReceivedAt)
		lo.Source, hi.Source = min(lo.Source, r.Source), max(hi.Source, r.Source)
	}
	vals := func(r schema.BronzeRow, p, h *float64) map[string]any {
		m := map[string]any{"device": r.Device, "ts": delta.FormatStatsTime(r.TS), "temp_c": r.TempC,
			"boot": r.Boot, "seq": r.Seq, "received_at": delta.FormatStatsTime(r.ReceivedAt), "source": r.Source}
		if p != nil {
			m["pressure_pa"] = *p
		}
		if h != nil {
			m["humidity_rh"] = *h
		}
		return m
	}
	nulls := map[string]int64{}
	for _, c := range []string{"device", "ts", "temp_c", "pressure_pa", "humidity_rh", "fresh", "boot", "seq", "received_at", "source"} {
		nulls[c] = 0
	}
	nulls["pressure_pa"], nulls["humidity_rh"] = pNull, hNull
	return delta.Stats{NumRecords: int64(len(rows)), MinValues: vals(lo, pLo, hLo), MaxValues: vals(hi, pHi, hHi), NullCount: nulls}
}

// readBronzeArrow reads a bronze file with Apache Arrow's Go reader.
func readBronzeArrow(t *testing.T, data []byte) []schema.BronzeRow {
	t.Helper()
	rdr, err := file.NewParquetReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("arrow: %v", err)
	}
	defer rdr.Close()
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{BatchSize: 1 << 12}, memory.DefaultAllocator)
	if err != nil {
		t.Fatalf("arrow: %v", err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		t.Fatalf("arrow: %v", err)
	}
	defer tbl.Release()
	rows := make([]schema.BronzeRow, tbl.NumRows())
	col := func(name string) []arrow.Array {
		idx := tbl.Schema().FieldIndices(name)
		if len(idx) != 1 {
			t.Fatalf("arrow: no column %s in %v", name, tbl.Schema())
		}
		return tbl.Column(idx[0]).Data().Chunks()
	}
	each := func(name string, set func(i int, a arrow.Array, j int)) {
		i := 0
		for _, a := range col(name) {
			for j := range a.Len() {
				set(i, a, j)
				i++
			}
		}
	}
	each("device", func(i int, a arrow.Array, j int) { rows[i].Device = a.(*array.String).Value(j) })
	each("ts", func(i int, a arrow.Array, j int) { rows[i].TS = int64(a.(*array.Timestamp).Value(j)) })
	each("temp_c", func(i int, a arrow.Array, j int) { rows[i].TempC = a.(*array.Float64).Value(j) })
	each("pressure_pa", func(i int, a arrow.Array, j int) {
		if !a.IsNull(j) {
			rows[i].PressurePa = schema.Float(a.(*array.Float64).Value(j))
		}
	})
	each("humidity_rh", func(i int, a arrow.Array, j int) {
		if !a.IsNull(j) {
			rows[i].HumidityRH = schema.Float(a.(*array.Float64).Value(j))
		}
	})
	each("fresh", func(i int, a arrow.Array, j int) { rows[i].Fresh = a.(*array.Boolean).Value(j) })
	each("boot", func(i int, a arrow.Array, j int) { rows[i].Boot = a.(*array.Int64).Value(j) })
	each("seq", func(i int, a arrow.Array, j int) { rows[i].Seq = a.(*array.Int64).Value(j) })
	each("received_at", func(i int, a arrow.Array, j int) { rows[i].ReceivedAt = int64(a.(*array.Timestamp).Value(j)) })
	each("source", func(i int, a arrow.Array, j int) { rows[i].Source = a.(*array.String).Value(j) })
	return rows
}

// simBatches makes n batches of per readings at 400 Hz shaped like the load
// generator's (collector/loadgen): slow sine waves plus a little noise, a
// fresh conversion every fourth reading, timestamps with a few µs of jitter.
func simBatches(n, per int, t0 int64) ([][]wire.Reading, []schema.BronzeRow) {
	readings := make([][]wire.Reading, n)
	tmpls := make([]schema.BronzeRow, n)
	for k := range readings {
		phase := float64(k) / float64(n) * 2 * math.Pi
		rs := make([]wire.Reading, per)
		for i := range rs {
			m := k*per + i
			conv := m - m%4
			rs[i] = wire.Reading{
				TimeUS: t0 + int64(k)*1_000_000 + int64(i)*2500 + int64(m%7),
				Temp:   2150 + int32(200*math.Sin(phase+float64(conv)/4000)) + int32(conv%3),
				Press:  uint32(101325*256 + 256*int(50*math.Cos(phase+float64(conv)/8000)) + conv%5),
				Hum:    uint32(45*1024 + int(1024*math.Sin(phase+float64(conv)/6000)) + conv%11),
				Fresh:  m%4 == 0,
			}
		}
		readings[k] = rs
		tmpls[k] = schema.BronzeRow{Device: fmt.Sprintf("sim-%05d", k%5000), Boot: int64(k%5000) * 7919, Seq: int64(k/5000 + 1),
			ReceivedAt: t0 + int64(k)*1_000_000 + 1_000_000, Source: "mqtt"}
	}
	return readings, tmpls
}

// BenchmarkBronzeEncode measures the bronze encoder (encodeBronze and
// delta.BronzeWriter) on its own: b.N batches of 400 readings, cut into files of
// 2,500 batches (1M readings, MaxEpochRows' default), each closed.
func BenchmarkBronzeEncode(b *testing.B) {
	const per, perFile = 400, 2500
	readings, tmpls := simBatches(512, per, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro())
	for _, compatible := range []bool{false, true} {
		b.Run(fmt.Sprintf("compatible=%v", compatible), func(b *testing.B) {
			jobs := make(chan bronzeJob, 64)
			done := make(chan struct{})
			bw := delta.NewBronzeWriter(compatible)
			go func() {
				encodeBronze(jobs, bw, func(*wire.Batch) {})
				close(done)
			}()
			var size, rows int64
			cut := func() {
				reply := make(chan *delta.BronzeWriter, 1)
				jobs <- bronzeJob{cut: reply, next: delta.NewBronzeWriter(compatible)}
				w := <-reply
				data, err := w.Close()
				if err != nil {
					b.Fatal(err)
				}
				size += int64(len(data))
				rows += w.Rows()
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuNow()
			for i := range b.N {
				k := i % len(readings)
				jobs <- bronzeJob{readings: readings[k], tmpl: tmpls[k]}
				if (i+1)%perFile == 0 {
					cut()
				}
			}
			cut()
			cpu := cpuNow() - cpu0
			b.StopTimer()
			close(jobs)
			<-done
			if rows != int64(b.N*per) {
				b.Fatalf("%d rows written, want %d", rows, b.N*per)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(rows), "ns/reading")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(rows), "cpu_ns/reading")
			b.ReportMetric(float64(size)/float64(rows), "bytes/reading")
		})
	}
}

// cpuNow is the process's CPU time (user+system, all threads).
func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
