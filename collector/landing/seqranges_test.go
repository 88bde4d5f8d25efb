package landing_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/pilake/pilake/collector/landing"
)

func TestSeqRanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		var s landing.SeqRanges
		ref := map[uint64]bool{}
		for range 60 {
			v := 1 + rng.Uint64N(40)
			s = s.Add(v)
			ref[v] = true
		}
		for v := uint64(0); v < 45; v++ {
			if s.Has(v) != ref[v] {
				t.Fatalf("Has(%d) = %v, want %v: %v", v, s.Has(v), ref[v], s)
			}
		}
		if !s.Valid() {
			t.Fatalf("ranges not sorted, disjoint and merged: %v", s)
		}
	}
}

// The ends of the uint64 range do not wrap around: MaxUint64 and 0 are
// not adjacent.
func TestSeqRangesEnds(t *testing.T) {
	const top = math.MaxUint64
	for _, c := range []struct {
		add  []uint64
		want landing.SeqRanges
	}{
		{[]uint64{top, 0}, landing.SeqRanges{{0, 0}, {top, top}}},
		{[]uint64{0, top}, landing.SeqRanges{{0, 0}, {top, top}}},
		{[]uint64{top - 1, top, 0}, landing.SeqRanges{{0, 0}, {top - 1, top}}},
		{[]uint64{top, top - 1, 1, 0}, landing.SeqRanges{{0, 1}, {top - 1, top}}},
	} {
		var s landing.SeqRanges
		for _, v := range c.add {
			s = s.Add(v)
		}
		if !slices.Equal(s, c.want) || !s.Valid() {
			t.Errorf("adding %v: %v, want %v", c.add, s, c.want)
		}
	}
}

func TestSeqRangesValid(t *testing.T) {
	const top = math.MaxUint64
	for _, c := range []struct {
		s    landing.SeqRanges
		want bool
	}{
		{nil, true}, {landing.SeqRanges{{1, 5}}, true}, {landing.SeqRanges{{1, 5}, {7, 9}}, true},
		{landing.SeqRanges{{0, 0}, {top, top}}, true},
		{landing.SeqRanges{{5, 1}}, false}, {landing.SeqRanges{{1, 5}, {6, 9}}, false}, {landing.SeqRanges{{7, 9}, {1, 5}}, false}, {landing.SeqRanges{{1, 5}, {3, 9}}, false},
		{landing.SeqRanges{{5, top}, {1, 2}}, false}, {landing.SeqRanges{{top, top}, {0, 0}}, false},
	} {
		if c.s.Valid() != c.want {
			t.Errorf("%v Valid = %v", c.s, !c.want)
		}
	}
}

// FuzzSeqRanges: any sequence of additions (small numbers, to collide, or
// near the top of the range) leaves a valid set holding exactly what was
// added.
func FuzzSeqRanges(f *testing.F) {
	f.Add([]byte{1, 2, 3, 5, 4})
	f.Add([]byte{0xff, 0x00, 0xfe, 0x01})
	f.Fuzz(func(t *testing.T, ops []byte) {
		var s landing.SeqRanges
		ref := map[uint64]bool{}
		for _, op := range ops {
			v := uint64(op & 0x3f)
			if op&0x80 != 0 {
				v = math.MaxUint64 - v
			}
			s = s.Add(v)
			ref[v] = true
		}
		if !s.Valid() {
			t.Fatalf("invalid set %v", s)
		}
		n := 0
		for _, r := range s {
			n += int(r[1]-r[0]) + 1
		}
		if n != len(ref) {
			t.Fatalf("%v holds %d numbers, want %d", s, n, len(ref))
		}
		for v := range ref {
			if !s.Has(v) {
				t.Fatalf("%v lacks %d", s, v)
			}
		}
	})
}
