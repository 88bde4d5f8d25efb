package landingtest

import (
	"testing"

	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
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
