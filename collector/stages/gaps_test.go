package stages

import (
	"reflect"
	"testing"

	"github.com/pilake/pilake/collector/landing"
)

func TestMissingRanges(t *testing.T) {
	var holes landing.SeqRanges
	for s := uint64(1); s <= 2*MaxGapRanges+10; s += 2 {
		holes = holes.Add(s)
	}
	got := missingRanges(map[string]landing.SeqRanges{
		"a/01": {{1, 10}},
		"b/02": {{3, 5}, {9, 9}, {12, 20}},
		"c/03": holes,
	})
	want := map[string][][2]uint64{"b/02": {{1, 2}, {6, 8}, {10, 11}}}
	if len(got["c/03"]) != MaxGapRanges {
		t.Errorf("stream c: %d ranges, want the cap %d", len(got["c/03"]), MaxGapRanges)
	}
	delete(got, "c/03")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
