package stages

import (
	"encoding/json"
	"math"
	"testing"

	"github.com/pilake/pilake/collector/landing"
)

// FuzzDecodeLandedState: a checkpoint's landed and segments sets are
// untrusted; decoding never panics, and what it accepts is well-formed.
func FuzzDecodeLandedState(f *testing.F) {
	f.Add([]byte(`{"dev-1/00000000deadbeef":[[1,40],[42,42]]}`), []byte(`{"00000000000000a1":[[1,9]]}`))
	f.Add([]byte(`{}`), []byte(nil))
	f.Add([]byte(`null`), []byte(`null`))
	f.Add([]byte(`{"a":[[5,1]]}`), []byte(`{"XYZ":[[1,1]]}`))
	f.Add([]byte(`{"a":[[1,3],[4,5]]}`), []byte(`{"00000000000000a1":[[3,4],[1,2]]}`))
	f.Fuzz(func(t *testing.T, landedJS, segmentsJS []byte) {
		landed, segments, err := decodeLandedState(landedJS, segmentsJS)
		if err != nil {
			return
		}
		if landed == nil || segments == nil {
			t.Fatal("nil sets accepted")
		}
		for _, s := range landed {
			if !s.Valid() {
				t.Fatalf("invalid landed set %v accepted", s)
			}
		}
		for k, s := range segments {
			if !landing.ValidInstance(k) || !s.Valid() {
				t.Fatalf("segments %q: %v accepted", k, s)
			}
		}
		// What was accepted encodes and decodes to itself.
		l2, _ := json.Marshal(landed)
		s2, _ := json.Marshal(segments)
		if _, _, err := decodeLandedState(l2, s2); err != nil {
			t.Fatalf("re-decoding accepted state: %v", err)
		}
	})
}

// The landed and segments sets keep their checkpoint format, [[lo,hi],...]
// per stream or instance: checkpoints in existing lakes must still load.
func TestLandedStateFormat(t *testing.T) {
	landedJS := `{"dev-1/00000000deadbeef":[[1,40],[42,42]],"dev-2/0000000000000001":[[7,7]]}`
	segmentsJS := `{"00000000000000a1":[[1,9],[11,18446744073709551615]]}`
	landed, segments, err := decodeLandedState([]byte(landedJS), []byte(segmentsJS))
	if err != nil {
		t.Fatal(err)
	}
	if !landed["dev-1/00000000deadbeef"].Has(42) || landed["dev-1/00000000deadbeef"].Has(41) ||
		!segments["00000000000000a1"].Has(math.MaxUint64) || segments["00000000000000a1"].Has(10) {
		t.Fatalf("decoded %v %v", landed, segments)
	}
	for _, c := range []struct {
		v    any
		want string
	}{{landed, landedJS}, {segments, segmentsJS}} {
		got, err := json.Marshal(c.v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("encoded %s, want %s", got, c.want)
		}
	}
	for _, bad := range []string{`{"a":[[5,1]]}`, `{"a":[[1,3],[4,5]]}`, `{"a":[[5,18446744073709551615],[1,2]]}`} {
		if _, _, err := decodeLandedState([]byte(bad), nil); err == nil {
			t.Errorf("accepted landed set %s", bad)
		}
	}
}
