package landingtest

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
)

// Copies reads lk's landing/ back and returns how many copies of each
// batch it holds, by batch key (wire.Batch.Key). It fails t if landing/
// holds anything but segments or an object does not decode
// (landing.ReadLanded).
func Copies(t testing.TB, lk lake.Lake) map[string]int {
	t.Helper()
	all, err := landing.ReadLanded(t.Context(), lk)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, l := range all {
		out[l.Batch.Key()]++
	}
	return out
}

// Quarantined reads the record of every input set aside under _quarantine/
// (each `.reason.json`) and returns them sorted by reason. It fails t if a
// record does not decode.
func Quarantined(t testing.TB, lk lake.Lake) []landing.Record {
	t.Helper()
	objs, err := lk.List(t.Context(), schema.Quarantine)
	if err != nil {
		t.Fatal(err)
	}
	var out []landing.Record
	for _, o := range objs {
		if !strings.HasSuffix(o.Name, ".reason.json") {
			continue
		}
		data, err := lk.Get(t.Context(), o.Name)
		if err != nil {
			t.Fatal(err)
		}
		var rec landing.Record
		if err := json.Unmarshal(data, &rec); err != nil {
			t.Fatalf("%s: %v", o.Name, err)
		}
		out = append(out, rec)
	}
	slices.SortFunc(out, func(a, b landing.Record) int { return strings.Compare(a.Reason, b.Reason) })
	return out
}
