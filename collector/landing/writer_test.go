package landing

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/lake"
)

// recordingGW is an in-memory lake.GroupWriter that numbers its operations,
// so a test can tell whether a Sync started after a write finished.
type recordingGW struct {
	mu       sync.Mutex
	clock    int
	written  map[string]int // name -> clock when its write finished
	syncs    []int          // clock at each Sync's start
	failSync error
}

func (g *recordingGW) WriteIfAbsent(_ context.Context, name string, _ []byte) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.clock++
	if _, ok := g.written[name]; ok {
		return fmt.Errorf("writing %s: %w", name, lake.ErrExists)
	}
	g.written[name] = g.clock
	return nil
}

func (g *recordingGW) Sync(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.clock++
	g.syncs = append(g.syncs, g.clock)
	return g.failSync
}

// durableSince reports whether a Sync started after clock c.
func (g *recordingGW) durableSince(c int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.syncs) > 0 && g.syncs[len(g.syncs)-1] > c
}

// Every write, and every duplicate of it, returns only after a Sync that
// started after the first copy was written; a failed Sync fails the writes
// it covered.
func TestGroupWriterDurableBeforeReturn(t *testing.T) {
	for _, tc := range []struct {
		name     string
		failSync error
	}{{"sync ok", nil}, {"sync fails", errors.New("disk gone")}} {
		t.Run(tc.name, func(t *testing.T) {
			g := &recordingGW{written: map[string]int{}, failSync: tc.failSync}
			var syncs int
			var smu sync.Mutex
			w := newGroupWriter(g, 2, func(time.Duration) { smu.Lock(); syncs++; smu.Unlock() })
			var wg sync.WaitGroup
			errs := make(chan error, 400)
			for i := range 400 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					name := fmt.Sprintf("landing/d/%d", i%100) // each name four times: duplicates
					err := w.WriteIfAbsent(t.Context(), name, []byte("x"))
					g.mu.Lock()
					at := g.written[name]
					g.mu.Unlock()
					if !g.durableSince(at) {
						errs <- fmt.Errorf("%s returned (%v) before a sync covered it", name, err)
						return
					}
					switch {
					case tc.failSync != nil && !errors.Is(err, tc.failSync):
						errs <- fmt.Errorf("%s: %v, want the sync's error", name, err)
					case tc.failSync == nil && err != nil && !errors.Is(err, lake.ErrExists):
						errs <- fmt.Errorf("%s: %v", name, err)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if len(g.written) != 100 || syncs == 0 {
				t.Fatalf("%d objects, %d syncs", len(g.written), syncs)
			}
		})
	}
}
