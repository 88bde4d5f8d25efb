package landing_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
)

// FuzzLand: whatever arrives, Land lands it under a name inside landing/ or
// quarantines it with a reason; it never fails (the lake works) or panics.
func FuzzLand(f *testing.F) {
	f.Add(encode(f, wire.Binary, batch("pi-1", 1, 400)), "pi-1")
	f.Add(encode(f, wire.BinaryZstd, batch("pi-1", 2, 400)), "")
	f.Add(encode(f, wire.JSON, batch("pi-2", 3, 2)), "pi-2")
	f.Add([]byte(`[{"deviceId":"../../etc","seq":1,"bootId":"1","ts":1,"temperature":20,"humidity":40,"pressure":100000}]`), "")
	f.Add([]byte{0x01}, "x")
	f.Fuzz(func(t *testing.T, data []byte, device string) {
		lk := lake.NewMemory() // a local lake costs an fsync per object: too slow for fuzzing
		var landed []landing.Landed
		ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet, Submit: func(_ context.Context, l landing.Landed) error {
			landed = append(landed, l)
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		out, err := ld.Land(t.Context(), landing.Message{Data: data, Source: "mqtt", Device: device})
		if err != nil {
			if errors.Is(err, lake.ErrBadName) {
				t.Fatalf("Land produced a bad object name: %v", err)
			}
			t.Fatalf("Land: %v", err)
		}
		switch out {
		case landing.OutcomeLanded:
			if len(landed) != 1 || !strings.HasPrefix(landed[0].Name, "landing/") || landed[0].Batch.Validate() != nil {
				t.Fatalf("landed %+v", landed)
			}
			seg, _ := lk.Get(t.Context(), landed[0].Name)
			recs, err := landing.DecodeSegment(seg)
			if err != nil || len(recs) != 1 || string(recs[0].Payload) != string(data) {
				t.Fatalf("segment %s: %v, %d records; want the input", landed[0].Name, err, len(recs))
			}
		case landing.OutcomeQuarantined:
			objs, _ := lk.List(t.Context(), "_quarantine/")
			if len(objs) != 2 || len(landed) != 0 {
				t.Fatalf("quarantine holds %v, submitted %d", objs, len(landed))
			}
		default:
			t.Fatalf("outcome %v on a fresh lake", out)
		}
	})
}
