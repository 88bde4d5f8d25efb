package stages

import (
	"math"

	"github.com/pilake/pilake/agent/wire"
)

// endedStream is a stream (device and boot) whose last batch
// (wire.FlagLast: the agent stopped cleanly after it) was processed.
type endedStream struct {
	device string
	seq    uint64 // the last batch's
	ts     int64  // its newest reading that was folded (µs), MinInt64 if none
}

// noteEnd is called after b (of stream) is folded, good being its readings
// that were. A stream's last batch is remembered; once the stream's batches
// 1 to the last one are all processed, the device's open windows up to the
// one holding the last reading are finalised: nothing more comes for them
// (the next boot's readings are later), so they need not wait for a
// watermark, nor stay open across a clean stop (Options.KeepOpenOnStop).
// A stream with a gap (a batch lost for good, or still on its way) keeps
// its windows open until its watermark passes them, as before.
func (r *runner) noteEnd(stream string, b *wire.Batch, good []wire.Reading) {
	if b.Flags&wire.FlagLast != 0 {
		e := endedStream{device: b.DeviceID, seq: b.Seq, ts: math.MinInt64}
		for i := range good {
			e.ts = max(e.ts, good[i].TimeUS)
		}
		r.ended[stream] = e
	}
	e, ok := r.ended[stream]
	if !ok {
		return
	}
	if set := r.landed[stream]; len(set) == 0 || set[0][0] > 1 || set[0][1] < e.seq {
		return // batches before the last one are missing yet
	}
	delete(r.ended, stream)
	r.m.count(func(s *Stats) { s.StreamsEnded++ })
	if e.ts != math.MinInt64 {
		r.f.closeThrough(e.device, e.ts)
	}
}

// closeThrough finalises dev's open windows up to the one holding ts.
func (f *folder) closeThrough(id string, ts int64) {
	if d := f.devices[id]; d != nil {
		f.closeBefore(id, d, floorDiv(ts, f.width)*f.width+f.width)
	}
}
