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
	if h.Sum() != 500500*time.Microsecond {
		t.Fatalf("sum %v, want 500.5 ms", h.Sum())
	}
	if c := h.CountAtMost(100); c < 97 || c > 100 {
		t.Fatalf("CountAtMost(100 µs) = %d, want 97..100 (one bucket of resolution)", c)
	}
	if c := h.CountAtMost(20); c != 20 {
		t.Fatalf("CountAtMost(20 µs) = %d, want exactly 20", c)
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
