package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"strconv"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// maxBodyPerReading bounds the decompressed body: a reading costs at most
// 10 bytes of timestamp, 2 bits and 3 varints of 10 bytes.
const maxBodyPerReading = 41

var (
	zdecOnce sync.Once
	zdec     *zstd.Decoder
	zdecErr  error
	zbufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
)

func zstdDecoder() (*zstd.Decoder, error) {
	zdecOnce.Do(func() {
		zdec, zdecErr = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(uint64(MaxReadings*maxBodyPerReading+64)), zstd.WithDecoderLowmem(true))
	})
	return zdec, zdecErr
}

// Decode parses data into b, reusing b.Readings' capacity (and b.DeviceID when
// it is unchanged), and validates the result with Batch.Validate. The encoding
// is detected from the first byte: 0x01 binary v1, '[' JSON. Errors wrap
// ErrCorrupt, ErrVersion or ErrInvalid. On error b's content is unspecified.
func Decode(data []byte, b *Batch) error {
	if len(data) == 0 {
		return fmt.Errorf("%w: empty", ErrCorrupt)
	}
	if len(data) > MaxEncodedSize {
		return fmt.Errorf("%w: %d bytes, over the %d-byte limit", ErrInvalid, len(data), MaxEncodedSize)
	}
	var err error
	switch data[0] {
	case Version1:
		err = decodeV1(data, b)
	case '[', ' ', '\n', '\r', '\t':
		err = decodeJSON(data, b)
	default:
		return fmt.Errorf("%w: version byte %#02x (this build reads %#02x and JSON)", ErrVersion, data[0], Version1)
	}
	if err != nil {
		return err
	}
	return b.Validate()
}

// reader is a bounds-checked cursor over untrusted bytes.
type reader struct {
	buf []byte
	off int
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated or malformed %s at byte %d", ErrCorrupt, what, r.off)
	}
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.buf[r.off:])
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.off += n
	return v
}

func (r *reader) varint(what string) int64 {
	u := r.uvarint(what)
	return int64(u>>1) ^ -int64(u&1)
}

func (r *reader) bytes(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.buf)-r.off) {
		r.fail(what)
		return nil
	}
	s := r.buf[r.off : r.off+int(n)]
	r.off += int(n)
	return s
}

func decodeV1(data []byte, b *Batch) error {
	if len(data) < 2+crcSize {
		return fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(data))
	}
	payload := data[:len(data)-crcSize]
	want := binary.LittleEndian.Uint32(data[len(data)-crcSize:])
	if got := crc32.Checksum(payload, castagnoli); got != want {
		return fmt.Errorf("%w: CRC-32C %08x, want %08x", ErrCorrupt, got, want)
	}
	flags := payload[1]
	if flags&^knownFlags != 0 {
		return fmt.Errorf("%w: unknown flags %#02x", ErrVersion, flags)
	}
	r := &reader{buf: payload, off: 2}
	idLen := r.uvarint("device id length")
	if r.err == nil && idLen > MaxDeviceIDLen {
		return fmt.Errorf("%w: device id of %d bytes, max %d", ErrInvalid, idLen, MaxDeviceIDLen)
	}
	id := r.bytes(idLen, "device id")
	boot := r.bytes(8, "boot id")
	seq := r.uvarint("sequence number")
	interval := r.uvarint("interval")
	mono := r.varint("monotonic offset")
	n := r.uvarint("reading count")
	bodyLen := r.uvarint("body length")
	body := r.bytes(bodyLen, "body")
	if r.err != nil {
		return r.err
	}
	if r.off != len(payload) {
		return fmt.Errorf("%w: %d unexpected bytes after the body", ErrCorrupt, len(payload)-r.off)
	}
	if n == 0 || n > MaxReadings {
		return fmt.Errorf("%w: %d readings, want 1-%d", ErrInvalid, n, MaxReadings)
	}
	if interval > math.MaxUint32 {
		return fmt.Errorf("%w: interval %d µs", ErrInvalid, interval)
	}
	if string(id) != b.DeviceID {
		b.DeviceID = string(id)
	}
	b.BootID = binary.LittleEndian.Uint64(boot)
	b.Seq = seq
	b.IntervalUS = uint32(interval)
	b.MonoOffsetUS = mono
	b.Flags = flags &^ flagZstd

	if flags&flagZstd != 0 {
		dec, err := zstdDecoder()
		if err != nil {
			return fmt.Errorf("creating zstd decoder: %w", err)
		}
		bp := zbufPool.Get().(*[]byte)
		defer zbufPool.Put(bp)
		out, err := dec.DecodeAll(body, (*bp)[:0])
		if err != nil {
			return fmt.Errorf("%w: zstd body: %v", ErrCorrupt, err)
		}
		if uint64(len(out)) > n*maxBodyPerReading+16 {
			return fmt.Errorf("%w: decompressed body of %d bytes for %d readings", ErrCorrupt, len(out), n)
		}
		*bp = out
		body = out
	}
	return decodeBody(body, int(n), b)
}

func decodeBody(body []byte, n int, b *Batch) error {
	if cap(b.Readings) >= n {
		b.Readings = b.Readings[:n]
	} else {
		b.Readings = make([]Reading, n)
	}
	r := &reader{buf: body}
	interval := int64(b.IntervalUS)
	t := r.varint("first timestamp")
	b.Readings[0].TimeUS = t
	for i := 1; i < n && r.err == nil; i++ {
		dod := r.varint("timestamp")
		d := dod + interval
		if d < 0 || d > MaxGapUS || dod > MaxGapUS || dod < -MaxGapUS {
			return fmt.Errorf("%w: reading %d: timestamp step %d µs", ErrInvalid, i, d)
		}
		t += d
		if t < 0 {
			return fmt.Errorf("%w: reading %d: timestamp overflows", ErrInvalid, i)
		}
		b.Readings[i].TimeUS = t
	}
	nb := (n + 7) / 8
	fresh := r.bytes(uint64(nb), "freshness bits")
	changed := r.bytes(uint64(nb), "value bits")
	if r.err != nil {
		return r.err
	}
	if changed[0]&1 == 0 {
		return fmt.Errorf("%w: first reading carries no values", ErrCorrupt)
	}
	hum := b.Flags&FlagNoHumidity == 0
	press := b.Flags&FlagNoPressure == 0
	// Columns: all temperature deltas, then pressure, then humidity.
	cols := [3]struct {
		min, max int64
		name     string
	}{{math.MinInt32, math.MaxInt32, "temperature"}, {0, math.MaxUint32, "pressure"}, {0, math.MaxUint32, "humidity"}}
	for c := 0; c < 3; c++ {
		if c == 1 && !press {
			for i := range b.Readings {
				b.Readings[i].Press = 0
			}
			continue
		}
		if c == 2 && !hum {
			for i := range b.Readings {
				b.Readings[i].Hum = 0
			}
			break
		}
		var v int64
		col := cols[c]
		for i := 0; i < n; i++ {
			if changed[i>>3]&(1<<(i&7)) != 0 {
				d := r.varint(col.name)
				if r.err != nil {
					return r.err
				}
				v += d
				if v < col.min || v > col.max || d > math.MaxUint32 || d < -math.MaxUint32 {
					return fmt.Errorf("%w: reading %d: %s out of range", ErrInvalid, i, col.name)
				}
			}
			rd := &b.Readings[i]
			switch c {
			case 0:
				rd.Temp = int32(v)
				rd.Fresh = fresh[i>>3]&(1<<(i&7)) != 0
			case 1:
				rd.Press = uint32(v)
			case 2:
				rd.Hum = uint32(v)
			}
		}
	}
	if r.err != nil {
		return r.err
	}
	if r.off != len(body) {
		return fmt.Errorf("%w: %d unexpected bytes at the end of the body", ErrCorrupt, len(body)-r.off)
	}
	// Padding bits past n must be zero, so every batch has one encoding.
	if pad := n & 7; pad != 0 {
		mask := byte(0xff) << pad
		if fresh[nb-1]&mask != 0 || changed[nb-1]&mask != 0 {
			return fmt.Errorf("%w: padding bits set", ErrCorrupt)
		}
	}
	return nil
}

// jsonReading is one element of the JSON encoding.
type jsonReading struct {
	MessageID    *int64   `json:"messageId"`
	DeviceID     string   `json:"deviceId"`
	Temperature  *float64 `json:"temperature"`
	Humidity     *float64 `json:"humidity"`
	Pressure     *float64 `json:"pressure"`
	TS           *int64   `json:"ts"`
	Fresh        *bool    `json:"fresh"`
	BootID       string   `json:"bootId"`
	Seq          *uint64  `json:"seq"`
	IntervalUS   uint32   `json:"intervalUs"`
	Flags        uint8    `json:"flags"`
	MonoOffsetUS int64    `json:"monoOffsetUs"`
}

func decodeJSON(data []byte, b *Batch) error {
	var rs []jsonReading
	if err := json.Unmarshal(data, &rs); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("%w: JSON: %v", ErrCorrupt, err)
		}
		return fmt.Errorf("%w: JSON: %v", ErrInvalid, err)
	}
	if len(rs) == 0 || len(rs) > MaxReadings {
		return fmt.Errorf("%w: %d readings, want 1-%d", ErrInvalid, len(rs), MaxReadings)
	}
	first := &rs[0]
	if first.Seq == nil {
		return fmt.Errorf("%w: JSON reading 0: missing seq", ErrInvalid)
	}
	boot, err := strconv.ParseUint(first.BootID, 16, 64)
	if err != nil {
		return fmt.Errorf("%w: JSON reading 0: bootId %q is not hex", ErrInvalid, truncate(first.BootID, 40))
	}
	if first.Flags&^batchFlags != 0 {
		return fmt.Errorf("%w: JSON: unknown flags %#x", ErrVersion, first.Flags)
	}
	b.DeviceID, b.BootID, b.Seq = first.DeviceID, boot, *first.Seq
	b.IntervalUS, b.Flags, b.MonoOffsetUS = first.IntervalUS, first.Flags, first.MonoOffsetUS
	if cap(b.Readings) >= len(rs) {
		b.Readings = b.Readings[:len(rs)]
	} else {
		b.Readings = make([]Reading, len(rs))
	}
	for i := range rs {
		j := &rs[i]
		if j.DeviceID != b.DeviceID || j.BootID != first.BootID || j.Seq == nil || *j.Seq != b.Seq {
			return fmt.Errorf("%w: JSON reading %d: deviceId/bootId/seq differ from reading 0", ErrInvalid, i)
		}
		noPress := b.Flags&FlagNoPressure != 0
		if j.Temperature == nil || j.Pressure == nil && !noPress || j.TS == nil {
			return fmt.Errorf("%w: JSON reading %d: temperature, pressure and ts are required", ErrInvalid, i)
		}
		if noPress && j.Pressure != nil {
			return fmt.Errorf("%w: JSON reading %d has pressure but the batch is flagged no-pressure", ErrInvalid, i)
		}
		rd := &b.Readings[i]
		rd.TimeUS = *j.TS
		rd.Fresh = j.Fresh == nil || *j.Fresh
		t, ok := fixed(*j.Temperature, 100, MinTemp, MaxTemp)
		if !ok {
			return fmt.Errorf("%w: JSON reading %d: temperature %g °C out of range", ErrInvalid, i, *j.Temperature)
		}
		rd.Temp, rd.Press, rd.Hum = int32(t), 0, 0
		if !noPress {
			p, ok := fixed(*j.Pressure, 256, MinPress, MaxPress)
			if !ok {
				return fmt.Errorf("%w: JSON reading %d: pressure %g Pa out of range", ErrInvalid, i, *j.Pressure)
			}
			rd.Press = uint32(p)
		}
		if b.Flags&FlagNoHumidity == 0 {
			if j.Humidity == nil {
				return fmt.Errorf("%w: JSON reading %d: humidity is required", ErrInvalid, i)
			}
			h, ok := fixed(*j.Humidity, 1024, 0, MaxHum)
			if !ok {
				return fmt.Errorf("%w: JSON reading %d: humidity %g %%RH out of range", ErrInvalid, i, *j.Humidity)
			}
			rd.Hum = uint32(h)
		}
	}
	return nil
}

// fixed converts a float in SI units to the fixed-point unit 1/scale, rounding,
// and checks it lies in [min, max].
func fixed(v, scale float64, min, max int64) (int64, bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	f := math.Round(v * scale)
	if f < float64(min) || f > float64(max) {
		return 0, false
	}
	return int64(f), true
}
