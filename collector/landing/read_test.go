package landing_test

import (
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/internal/clock"
)

func TestReadLanded(t *testing.T) {
	ctx := t.Context()
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 24, 12, 0, 5, 0, time.UTC)
	clk := clock.NewFake(now)
	ld, err := landing.New(landing.Options{Lake: lk, Submit: (&submitted{}).submit, Clock: clk, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []landing.Message{
		{Data: encode(t, wire.Binary, batch("pi-1", 1, 4)), Source: "mqtt"},
		{Data: encode(t, wire.JSON, batch("pi-2", 7, 3)), Source: "iothub"},
	} {
		if out, err := ld.Land(ctx, m); err != nil || out != landing.OutcomeLanded {
			t.Fatalf("Land: %v %v", out, err)
		}
	}
	got, err := landing.ReadLanded(ctx, lk)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]landing.Landed{}
	for _, l := range got {
		byKey[l.Batch.Key()] = l
	}
	if len(got) != 2 || len(byKey) != 2 {
		t.Fatalf("read %d batches (%d keys), want 2", len(got), len(byKey))
	}
	for _, want := range []struct {
		b      *wire.Batch
		source string
	}{{batch("pi-1", 1, 4), "mqtt"}, {batch("pi-2", 7, 3), "iothub"}} {
		l, ok := byKey[want.b.Key()]
		switch {
		case !ok:
			t.Errorf("%s not read", want.b.Key())
		case len(l.Batch.Readings) != len(want.b.Readings) || l.Batch.Readings[0] != want.b.Readings[0]:
			t.Errorf("%s: readings %+v, want %+v", want.b.Key(), l.Batch.Readings, want.b.Readings)
		case l.Source != want.source || !l.ReceivedAt.Equal(now) || l.SegmentRecords != 1:
			t.Errorf("%s: %+v, want from %s at %v, alone in its segment", want.b.Key(), l, want.source, now)
		default:
			if inst, _, ok := landing.ParseSegmentName(l.Name); !ok || inst != ld.Instance() {
				t.Errorf("%s: read from %q, not a segment of %s", want.b.Key(), l.Name, ld.Instance())
			}
		}
	}

	// What is not a landed batch is an error.
	seg := landing.SegmentName(now, "00000000000000a1", 1)
	for _, c := range []struct {
		desc, name string
		data       []byte
	}{
		{"corrupt segment", seg, append(landing.AppendSegmentHeader(nil), 0x05, 0x01)},
		{"segment record not a batch", seg, landing.EncodeSegment([]landing.SegmentRecord{{ReceivedAt: now, Source: "mqtt", Payload: []byte("hi")}})},
		{"not a batch", "landing/notes.txt", []byte("hello")},
		// A batch alone under a name of its own (a per-batch layout that
		// was never released): not a segment.
		{"batch not in a segment", "landing/pi-3/0000000000000002/00000000000000000005.bin", encode(t, wire.Binary, batch("pi-3", 2, 5))},
	} {
		t.Run(c.desc, func(t *testing.T) {
			lk, err := lake.NewLocal(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if err := lk.Put(t.Context(), c.name, c.data); err != nil {
				t.Fatal(err)
			}
			if got, err := landing.ReadLanded(t.Context(), lk); err == nil {
				t.Fatalf("read %+v, want an error", got)
			}
		})
	}
}
