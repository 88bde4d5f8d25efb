package stages

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/pilake/pilake/agent/wire"
)

// The devices' state is stored in a compact binary form (JSON of thousands
// of devices' windows and histories costs more than the rest of an epoch):
//
//	"PLSD2" uvarint(#devices) { device }
//	device: uvarint(len) id  varint(maxEvent) varint(closedBefore)
//	        uvarint(#open) { varint(start) uvarint(n) uvarint(fresh)
//	                         varint(tSum) varint(tMin) varint(tMax)
//	                         uvarint(pN) varint(pSum) uvarint(pMin) uvarint(pMax)
//	                         uvarint(hN) varint(hSum) uvarint(hMin) uvarint(hMax) }
//	        uvarint(#hist) { varint(start) f64le(t) f64le(p) f64le(h) }
//
// p and h of a history entry are NaN when its window had no such value.
// "PLSD1" (before nullable pressure and humidity) has no pN and hN: every
// reading then had both (pN = hN = n).
const (
	stateMagic   = "PLSD2"
	stateMagicV1 = "PLSD1"
)

// errState wraps every decoding error of the devices' state.
var errState = errors.New("corrupt stage state")

func appendDevices(dst []byte, devs map[string]*device) []byte {
	dst = append(dst, stateMagic...)
	dst = binary.AppendUvarint(dst, uint64(len(devs)))
	for id, d := range devs {
		dst = binary.AppendUvarint(dst, uint64(len(id)))
		dst = append(dst, id...)
		dst = binary.AppendVarint(dst, d.MaxEvent)
		dst = binary.AppendVarint(dst, d.ClosedBefore)
		dst = binary.AppendUvarint(dst, uint64(len(d.Open)))
		for i := range d.Open {
			w := &d.Open[i]
			dst = binary.AppendVarint(dst, w.Start)
			dst = binary.AppendUvarint(dst, uint64(w.N))
			dst = binary.AppendUvarint(dst, uint64(w.Fresh))
			dst = binary.AppendVarint(dst, w.TSum)
			dst = binary.AppendVarint(dst, int64(w.TMin))
			dst = binary.AppendVarint(dst, int64(w.TMax))
			dst = binary.AppendUvarint(dst, uint64(w.pressN()))
			dst = binary.AppendVarint(dst, w.PSum)
			dst = binary.AppendUvarint(dst, uint64(w.PMin))
			dst = binary.AppendUvarint(dst, uint64(w.PMax))
			dst = binary.AppendUvarint(dst, uint64(w.humN()))
			dst = binary.AppendVarint(dst, w.HSum)
			dst = binary.AppendUvarint(dst, uint64(w.HMin))
			dst = binary.AppendUvarint(dst, uint64(w.HMax))
		}
		dst = binary.AppendUvarint(dst, uint64(len(d.Hist)))
		for _, h := range d.Hist {
			dst = binary.AppendVarint(dst, h.Start)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(h.T))
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(h.P))
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(h.H))
		}
	}
	return dst
}

type stateReader struct {
	b   []byte
	err error
}

func (r *stateReader) uvarint(max uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > max {
		r.err = fmt.Errorf("%w: bad unsigned value at %d bytes from the end", errState, len(r.b))
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: bad signed value at %d bytes from the end", errState, len(r.b))
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) int32() int32 {
	v := r.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.fail("value out of range")
	}
	return int32(v)
}

func (r *stateReader) f64() float64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.fail("truncated")
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

func (r *stateReader) fail(msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errState, msg)
	}
}

// decodeDevices parses appendDevices' output. The state comes from the lake:
// every count is checked against the bytes left before anything is allocated.
func decodeDevices(data []byte) (map[string]*device, error) {
	if len(data) < len(stateMagic) || string(data[:len(stateMagic)]) != stateMagic && string(data[:len(stateMagic)]) != stateMagicV1 {
		return nil, fmt.Errorf("%w: bad magic", errState)
	}
	v1 := string(data[:len(stateMagic)]) == stateMagicV1
	r := &stateReader{b: data[len(stateMagic):]}
	n := r.uvarint(uint64(len(r.b)))
	devs := make(map[string]*device, n)
	for i := uint64(0); i < n && r.err == nil; i++ {
		l := r.uvarint(wire.MaxDeviceIDLen)
		if r.err != nil || uint64(len(r.b)) < l {
			r.fail("truncated device id")
			break
		}
		id := string(r.b[:l])
		r.b = r.b[l:]
		if !wire.ValidDeviceID(id) {
			r.fail(fmt.Sprintf("bad device id %q", id))
			break
		}
		if _, dup := devs[id]; dup {
			r.fail("device " + id + " twice")
			break
		}
		d := &device{MaxEvent: r.varint(), ClosedBefore: r.varint()}
		no := r.uvarint(uint64(len(r.b)) / 12) // a window takes at least 12 bytes
		d.Open = make([]window, 0, no)
		for j := uint64(0); j < no && r.err == nil; j++ {
			w := window{Start: r.varint(), N: int64(r.uvarint(math.MaxInt64)), Fresh: int64(r.uvarint(math.MaxInt64)),
				TSum: r.varint(), TMin: r.int32(), TMax: r.int32()}
			pn := w.N // PLSD1: every reading had both
			if !v1 {
				pn = int64(r.uvarint(math.MaxInt64))
			}
			w.PSum, w.PMin, w.PMax = r.varint(), uint32(r.uvarint(math.MaxUint32)), uint32(r.uvarint(math.MaxUint32))
			hn := w.N
			if !v1 {
				hn = int64(r.uvarint(math.MaxInt64))
			}
			w.PMiss, w.HMiss = w.N-pn, w.N-hn
			w.HSum, w.HMin, w.HMax = r.varint(), uint32(r.uvarint(math.MaxUint32)), uint32(r.uvarint(math.MaxUint32))
			if r.err == nil && (w.N <= 0 || w.Fresh > w.N || pn > w.N || hn > w.N || pn < 0 || hn < 0 || w.Start < d.ClosedBefore ||
				len(d.Open) > 0 && w.Start <= d.Open[len(d.Open)-1].Start) {
				r.fail("bad open window of " + id)
			}
			d.Open = append(d.Open, w)
		}
		nh := r.uvarint(uint64(len(r.b)) / 25) // a history entry takes at least 25 bytes
		d.Hist = make([]hist, 0, nh)
		for j := uint64(0); j < nh && r.err == nil; j++ {
			d.Hist = append(d.Hist, hist{Start: r.varint(), T: r.f64(), P: r.f64(), H: r.f64()})
		}
		if r.err == nil && !slices.IsSortedFunc(d.Hist, func(a, b hist) int { return int(min(max(a.Start-b.Start, -1), 1)) }) {
			r.fail("history of " + id + " out of order")
		}
		devs[id] = d
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail(fmt.Sprintf("%d trailing bytes", len(r.b)))
	}
	if r.err != nil {
		return nil, r.err
	}
	return devs, nil
}
