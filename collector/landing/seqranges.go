package landing

import (
	"math"
	"slices"
)

// SeqRanges is a set of sequence numbers as sorted, disjoint, non-adjacent
// closed ranges [lo, hi]. The Lander keeps one per stream for the batches it
// made durable; the stages keep one per stream for the batches they
// processed and one per Lander instance for the segments they finished, and
// persist them in their checkpoints as JSON, [[lo,hi],...]. The zero value
// is the empty set.
type SeqRanges [][2]uint64

// Has reports whether seq is in s.
func (s SeqRanges) Has(seq uint64) bool {
	i, found := slices.BinarySearchFunc(s, seq, func(r [2]uint64, v uint64) int {
		switch {
		case r[1] < v:
			return -1
		case r[0] > v:
			return 1
		}
		return 0
	})
	return found && i < len(s)
}

// Add returns s with seq added, merging ranges that come to touch. Like
// append, it may change s in place: use only the result.
func (s SeqRanges) Add(seq uint64) SeqRanges {
	// Fast path: extends the last range (in-order delivery).
	if n := len(s); n > 0 && s[n-1][1] != math.MaxUint64 && s[n-1][1]+1 == seq {
		s[n-1][1] = seq
		return s
	}
	i, _ := slices.BinarySearchFunc(s, seq, func(r [2]uint64, v uint64) int {
		if r[1] < v {
			return -1
		}
		return 1
	})
	if i < len(s) && s[i][0] <= seq {
		return s // present
	}
	// Here s[i-1][1] < seq and s[i][0] > seq, so neither +1 overflows.
	joinPrev := i > 0 && s[i-1][1]+1 == seq
	joinNext := i < len(s) && s[i][0] == seq+1
	switch {
	case joinPrev && joinNext:
		s[i-1][1] = s[i][1]
		return slices.Delete(s, i, i+1)
	case joinPrev:
		s[i-1][1] = seq
	case joinNext:
		s[i][0] = seq
	default:
		s = slices.Insert(s, i, [2]uint64{seq, seq})
	}
	return s
}

// Valid reports whether s is sorted, disjoint and non-adjacent, with
// lo <= hi in every range: whether s, read from untrusted input, is a set
// Has and Add can work on.
func (s SeqRanges) Valid() bool {
	for i, r := range s {
		if r[0] > r[1] || i > 0 && (s[i-1][1] == math.MaxUint64 || s[i-1][1]+1 >= r[0]) {
			return false
		}
	}
	return true
}
