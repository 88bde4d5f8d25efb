package stages

import "github.com/pilake/pilake/collector/landing"

// MaxGapRanges bounds the missing ranges Gaps reports per stream.
const MaxGapRanges = 64

// missingRanges returns, per stream, the ranges missing from its landed set:
// before its first range (sequence numbers start at 1) and between ranges.
func missingRanges(landed map[string]landing.SeqRanges) map[string][][2]uint64 {
	out := map[string][][2]uint64{}
	for stream, set := range landed {
		var miss [][2]uint64
		next := uint64(1)
		for _, r := range set {
			if r[0] > next {
				miss = append(miss, [2]uint64{next, r[0] - 1})
				if len(miss) == MaxGapRanges {
					break
				}
			}
			next = r[1] + 1
		}
		if len(miss) > 0 {
			out[stream] = miss
		}
	}
	return out
}
