package landing

import (
	"context"
	"fmt"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// ReadLanded reads back every batch in lk's landing/, in object name order:
// each record of every segment. It is for tests and tools that check what
// was landed; the stages read landing/ themselves. Name is the segment
// holding the batch. An object under landing/ that is not a segment, or
// that does not decode, is an error.
func ReadLanded(ctx context.Context, lk lake.Lake) ([]Landed, error) {
	objs, err := lk.List(ctx, schema.Landing)
	if err != nil {
		return nil, fmt.Errorf("listing landing objects: %w", err)
	}
	var out []Landed
	for _, o := range objs {
		if _, _, ok := ParseSegmentName(o.Name); !ok {
			return nil, fmt.Errorf("landing object %s: not a segment name", o.Name)
		}
		data, err := lk.Get(ctx, o.Name)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", o.Name, err)
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
