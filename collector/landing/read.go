package landing

import (
	"context"
	"fmt"
	"strings"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// ReadLanded reads back every batch in lk's landing/, in object name order:
// each record of every segment, and every legacy per-batch object (see
// ObjectName). It is for tests and tools that check what was landed; the
// stages read landing/ themselves. Name is the object holding the batch;
// for a legacy object SegmentRecords is 0 and ReceivedAt and Source are
// zero. An object under landing/ that is neither, or that does not decode,
// is an error.
func ReadLanded(ctx context.Context, lk lake.Lake) ([]Landed, error) {
	objs, err := lk.List(ctx, schema.Landing)
	if err != nil {
		return nil, fmt.Errorf("listing landing objects: %w", err)
	}
	var out []Landed
	for _, o := range objs {
		data, err := lk.Get(ctx, o.Name)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", o.Name, err)
		}
		if !strings.HasPrefix(o.Name, SegmentDir) {
			b := new(wire.Batch)
			if err := wire.Decode(data, b); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", o.Name, err)
			}
			if want := ObjectName(b, data); o.Name != want {
				return nil, fmt.Errorf("landing object %s holds %s", o.Name, want)
			}
			out = append(out, Landed{Name: o.Name, Batch: b})
			continue
		}
		recs, err := DecodeSegment(data)
		if err != nil {
			return nil, fmt.Errorf("decoding segment %s: %w", o.Name, err)
		}
		for i, r := range recs {
			b := new(wire.Batch)
			if err := wire.Decode(r.Payload, b); err != nil {
				return nil, fmt.Errorf("decoding segment %s record %d: %w", o.Name, i, err)
			}
			out = append(out, Landed{Name: o.Name, SegmentRecords: len(recs), Batch: b,
				ReceivedAt: r.ReceivedAt, Source: r.Source})
		}
	}
	return out, nil
}
