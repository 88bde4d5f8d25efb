package sample

import (
	"testing"
	"time"
)

func TestHistQuantiles(t *testing.T) {
	var h Hist
	if h.Quantile(0.5) != 0 {
		t.Fatal("empty histogram has a non-zero quantile")
	}
	for i := 1; i <= 1000; i++ {
		h.Observe(time.Duration(i) * time.Microsecond)
	}
	tests := []struct{ q, want float64 }{{0.5, 500}, {0.99, 990}, {0.01, 10}}
	for _, tc := range tests {
		got := h.Quantile(tc.q)
		if got < tc.want || got > tc.want*1.04 {
			t.Errorf("q%.2f = %.0f µs, want %.0f within +4%%", tc.q, got, tc.want)
		}
	}
	h.Observe(-time.Second)
	h.Observe(1000 * time.Hour)
	if h.Count() != 1002 || h.Max() != 1000*time.Hour {
		t.Fatalf("count %d max %v", h.Count(), h.Max())
	}
	for us := uint64(0); us < 1<<20; us += 7 {
		i := histIndex(us)
		if float64(us) > histUpper(i) || (i > 0 && float64(us) < histUpper(i-1)) && us >= histSub {
			t.Fatalf("%d µs in bucket %d with bounds (%v, %v]", us, i, histUpper(i-1), histUpper(i))
		}
	}
}
