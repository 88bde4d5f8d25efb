package wire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"sync"

	"github.com/klauspost/compress/zstd"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// zstdMinBody is the body size below which compression is not attempted.
const zstdMinBody = 256

// Encoder appends encoded batches to a buffer, reusing its scratch space so
// that steady-state encoding does not allocate. An Encoder is not safe for
// concurrent use; use one per goroutine.
type Encoder struct {
	enc                         Encoding
	body, ts, bits, t, p, h, zb []byte
	zenc                        *zstd.Encoder
}

// NewEncoder returns an Encoder producing enc. With BinaryZstd the body is
// compressed only when that makes the batch smaller; otherwise it is stored
// as plain Binary.
func NewEncoder(enc Encoding) *Encoder {
	return &Encoder{enc: enc}
}

// Encoding returns the encoding the Encoder was created with.
func (e *Encoder) Encoding() Encoding { return e.enc }

// Append encodes b and appends it to dst. It validates b first (Batch.Validate)
// and checks the binary invariants, so nothing it produces is rejected by Decode.
func (e *Encoder) Append(dst []byte, b *Batch) ([]byte, error) {
	if err := b.Validate(); err != nil {
		return dst, fmt.Errorf("encoding batch: %w", err)
	}
	if b.Flags&^batchFlags != 0 {
		return dst, fmt.Errorf("encoding batch: %w: unknown flags %#x", ErrInvalid, b.Flags)
	}
	start := len(dst)
	var err error
	if e.enc == JSON {
		dst = appendJSON(dst, b)
	} else {
		dst, err = e.appendBinary(dst, b)
	}
	if err != nil {
		return dst[:start], err
	}
	if size := len(dst) - start; size > MaxEncodedSize {
		return dst[:start], fmt.Errorf("encoding batch of %d readings: %w: %d bytes, max %d", len(b.Readings), ErrTooLarge, size, MaxEncodedSize)
	}
	return dst, nil
}

func zz(v int64) uint64 { return uint64(v<<1) ^ uint64(v>>63) }

func (e *Encoder) appendBinary(dst []byte, b *Batch) ([]byte, error) {
	n := len(b.Readings)
	nb := (n + 7) / 8
	e.ts = e.ts[:0]
	e.t, e.p, e.h = e.t[:0], e.p[:0], e.h[:0]
	if cap(e.bits) < 2*nb {
		e.bits = make([]byte, 2*nb)
	}
	bits := e.bits[:2*nb]
	clear(bits)
	fresh, changed := bits[:nb], bits[nb:]
	hum := b.Flags&FlagNoHumidity == 0
	press := b.Flags&FlagNoPressure == 0
	interval := int64(b.IntervalUS)

	first := &b.Readings[0]
	e.ts = binary.AppendUvarint(e.ts, zz(first.TimeUS))
	var pt, pp, ph int64
	for i := range b.Readings {
		r := &b.Readings[i]
		if i > 0 {
			d := r.TimeUS - b.Readings[i-1].TimeUS
			e.ts = binary.AppendUvarint(e.ts, zz(d-interval))
		}
		if r.Fresh {
			fresh[i>>3] |= 1 << (i & 7)
		}
		t, p, h := int64(r.Temp), int64(r.Press), int64(r.Hum)
		if !hum && h != 0 {
			return nil, fmt.Errorf("encoding batch: %w: reading %d has humidity but the batch is flagged no-humidity", ErrInvalid, i)
		}
		if i == 0 || t != pt || p != pp || h != ph {
			changed[i>>3] |= 1 << (i & 7)
			e.t = binary.AppendUvarint(e.t, zz(t-pt))
			if press {
				e.p = binary.AppendUvarint(e.p, zz(p-pp))
			}
			if hum {
				e.h = binary.AppendUvarint(e.h, zz(h-ph))
			}
			pt, pp, ph = t, p, h
		}
	}
	body := append(e.body[:0], e.ts...)
	body = append(body, bits...)
	body = append(body, e.t...)
	body = append(body, e.p...)
	body = append(body, e.h...)
	e.body = body

	flags := b.Flags
	if e.enc == BinaryZstd && len(body) >= zstdMinBody {
		if e.zenc == nil {
			z, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault),
				zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false), zstd.WithLowerEncoderMem(true))
			if err != nil {
				return nil, fmt.Errorf("creating zstd encoder: %w", err)
			}
			e.zenc = z
		}
		e.zb = e.zenc.EncodeAll(body, e.zb[:0])
		if len(e.zb) < len(body) {
			body = e.zb
			flags |= flagZstd
		}
	}

	start := len(dst)
	dst = append(dst, Version1, flags)
	dst = binary.AppendUvarint(dst, uint64(len(b.DeviceID)))
	dst = append(dst, b.DeviceID...)
	dst = binary.LittleEndian.AppendUint64(dst, b.BootID)
	dst = binary.AppendUvarint(dst, b.Seq)
	dst = binary.AppendUvarint(dst, uint64(b.IntervalUS))
	dst = binary.AppendUvarint(dst, zz(b.MonoOffsetUS))
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = binary.AppendUvarint(dst, uint64(len(body)))
	dst = append(dst, body...)
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
	return dst, nil
}

// jsonBufPool holds scratch for float formatting in JSON encoding.
var jsonBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 32); return &b }}

// appendJSON writes the Azure-simulator-compatible array: one object per
// reading with messageId, deviceId, temperature, humidity (the simulator's
// fields), pressure, and pilake's ts (µs), fresh, bootId, seq, intervalUs,
// flags and monoOffsetUs. Values are written exactly (shortest round-trip
// form of the fixed-point value), so decoding is lossless.
func appendJSON(dst []byte, b *Batch) []byte {
	bp := jsonBufPool.Get().(*[]byte)
	defer jsonBufPool.Put(bp)
	boot := strconv.AppendUint((*bp)[:0], b.BootID, 16)
	dst = append(dst, '[')
	for i := range b.Readings {
		r := &b.Readings[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"messageId":`...)
		dst = strconv.AppendInt(dst, int64(i+1), 10)
		dst = append(dst, `,"deviceId":"`...)
		dst = append(dst, b.DeviceID...) // ValidDeviceID: no escaping needed
		dst = append(dst, `","temperature":`...)
		dst = strconv.AppendFloat(dst, r.TempC(), 'f', 2, 64)
		dst = append(dst, `,"humidity":`...)
		if b.Flags&FlagNoHumidity != 0 {
			dst = append(dst, "null"...)
		} else {
			dst = strconv.AppendFloat(dst, r.HumidityRH(), 'f', -1, 64)
		}
		dst = append(dst, `,"pressure":`...)
		if b.Flags&FlagNoPressure != 0 {
			dst = append(dst, "null"...)
		} else {
			dst = strconv.AppendFloat(dst, r.PressurePa(), 'f', -1, 64)
		}
		dst = append(dst, `,"ts":`...)
		dst = strconv.AppendInt(dst, r.TimeUS, 10)
		dst = append(dst, `,"fresh":`...)
		dst = strconv.AppendBool(dst, r.Fresh)
		dst = append(dst, `,"bootId":"`...)
		dst = append(dst, boot...)
		dst = append(dst, `","seq":`...)
		dst = strconv.AppendUint(dst, b.Seq, 10)
		dst = append(dst, `,"intervalUs":`...)
		dst = strconv.AppendUint(dst, uint64(b.IntervalUS), 10)
		dst = append(dst, `,"flags":`...)
		dst = strconv.AppendUint(dst, uint64(b.Flags), 10)
		dst = append(dst, `,"monoOffsetUs":`...)
		dst = strconv.AppendInt(dst, b.MonoOffsetUS, 10)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}
