package live

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pilake/pilake/internal/clock"
)

// simulate runs the SSE handler's coalescing loop (ServeHTTP: wait for an
// update, then until throttle.due, noting further arrivals) on a virtual
// clock over updates arriving at the given offsets (sorted), and returns
// when each message went out and how long each update waited for its
// message.
func simulate(t *testing.T, interval, quiet time.Duration, arrivals []time.Duration) (sends []time.Duration, waits []time.Duration) {
	t.Helper()
	start := time.Unix(1_790_000_000, 0)
	clk := clock.NewFake(start)
	at := func() time.Duration { return clk.Now().Sub(start) }
	th := throttle{interval: interval, quiet: quiet}
	i := 0
	for i < len(arrivals) {
		clk.Advance(arrivals[i] - at()) // idle until the next update
		th.arrive(clk.Now())
		j := i + 1
		for {
			due := th.due().Sub(start)
			if j < len(arrivals) && arrivals[j] < due {
				clk.Advance(arrivals[j] - at())
				th.arrive(clk.Now())
				j++
				continue
			}
			clk.Advance(max(due-at(), 0))
			break
		}
		for j < len(arrivals) && arrivals[j] <= at() { // in the hub when the message is written
			j++
		}
		for _, a := range arrivals[i:j] {
			waits = append(waits, at()-a)
		}
		sends = append(sends, at())
		th.sent(clk.Now())
		i = j
	}
	return sends, waits
}

func checkRate(t *testing.T, sends []time.Duration, interval time.Duration) {
	t.Helper()
	for k := 1; k < len(sends); k++ {
		if d := sends[k] - sends[k-1]; d < interval {
			t.Fatalf("messages %d and %d %v apart, less than the interval %v", k-1, k, d, interval)
		}
	}
}

func TestThrottleSchedule(t *testing.T) {
	const iv, q = 100 * time.Millisecond, 5 * time.Millisecond
	ms := func(x float64) time.Duration { return time.Duration(x * float64(time.Millisecond)) }

	t.Run("lone updates go out a quiet time after they arrive", func(t *testing.T) {
		// One device's chart: an update a second, and one 150 ms after a message.
		sends, waits := simulate(t, iv, q, []time.Duration{ms(1000), ms(2000), ms(2155), ms(3000)})
		want := []time.Duration{ms(1005), ms(2005), ms(2160), ms(3005)}
		if len(sends) != len(want) {
			t.Fatalf("sends %v, want %v", sends, want)
		}
		for k := range want {
			if sends[k] != want[k] {
				t.Fatalf("sends %v, want %v", sends, want)
			}
		}
		for _, w := range waits {
			if w != q {
				t.Fatalf("waits %v, want %v each", waits, q)
			}
		}
	})

	t.Run("an update inside the interval waits for its end", func(t *testing.T) {
		sends, _ := simulate(t, iv, q, []time.Duration{ms(1000), ms(1030)})
		if len(sends) != 2 || sends[0] != ms(1005) || sends[1] != ms(1105) {
			t.Fatalf("sends %v, want [1.005s 1.105s]", sends)
		}
	})

	t.Run("a burst goes out as one message after its end", func(t *testing.T) {
		// 100 devices whose batches end together: 100 updates over 30 ms, once a second.
		var arr []time.Duration
		for s := 1; s <= 5; s++ {
			for d := range 100 {
				arr = append(arr, ms(float64(s)*1000+0.3*float64(d)))
			}
		}
		sends, waits := simulate(t, iv, q, arr)
		if len(sends) != 5 {
			t.Fatalf("%d messages for 5 bursts (%v), want 5", len(sends), sends)
		}
		for _, w := range waits {
			if w > ms(29.7)+q {
				t.Fatalf("an update of a burst waited %v, want at most the burst's 29.7 ms + %v", w, q)
			}
		}
	})

	t.Run("a steady stream goes out once an interval", func(t *testing.T) {
		// 100 devices at evenly spread phases: an update every 10 ms for 3 s.
		var arr []time.Duration
		for k := range 300 {
			arr = append(arr, ms(1000+10*float64(k)))
		}
		sends, waits := simulate(t, iv, q, arr)
		checkRate(t, sends, iv)
		if len(sends) < 29 || len(sends) > 31 {
			t.Fatalf("%d messages in 3 s, want about 30", len(sends))
		}
		for _, w := range waits {
			if w > iv {
				t.Fatalf("an update waited %v, more than the interval", w)
			}
		}
	})

	t.Run("random arrivals: never two messages within the interval, no update waits longer", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for trial := range 200 {
			var arr []time.Duration
			at := time.Duration(0)
			for range 300 {
				switch rng.IntN(3) {
				case 0:
					at += time.Duration(rng.Int64N(int64(300 * time.Millisecond)))
				case 1:
					at += time.Duration(rng.Int64N(int64(20 * time.Millisecond)))
				default:
					at += time.Duration(rng.Int64N(int64(time.Millisecond)))
				}
				arr = append(arr, at)
			}
			quiet := []time.Duration{0, q, 50 * time.Millisecond}[trial%3]
			sends, waits := simulate(t, iv, quiet, arr)
			checkRate(t, sends, iv)
			if len(waits) != len(arr) {
				t.Fatalf("%d of %d updates sent", len(waits), len(arr))
			}
			for _, w := range waits {
				if w > iv {
					t.Fatalf("trial %d: an update waited %v, more than the interval", trial, w)
				}
			}
		}
	})
}
