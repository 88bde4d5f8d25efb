package landing

import "slices"

// seqRanges is a set of sequence numbers as sorted, disjoint, non-adjacent
// closed ranges [lo, hi] (the stages keep the same structure per stream).
type seqRanges [][2]uint64

func (s seqRanges) has(seq uint64) bool {
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

func (s seqRanges) add(seq uint64) seqRanges {
	if n := len(s); n > 0 && s[n-1][1]+1 == seq && seq != 0 {
		s[n-1][1] = seq // in-order delivery
		return s
	}
	i, _ := slices.BinarySearchFunc(s, seq, func(r [2]uint64, v uint64) int {
		if r[1] < v {
			return -1
		}
		return 1
	})
	if i < len(s) && s[i][0] <= seq {
		return s
	}
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
