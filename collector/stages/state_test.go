package stages

import (
	"encoding/json"
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
			if !s.valid() {
				t.Fatalf("invalid landed set %v accepted", s)
			}
		}
		for k, s := range segments {
			if !landing.ValidInstance(k) || !s.valid() {
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
