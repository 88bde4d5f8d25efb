package stages_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
	"github.com/pilake/pilake/internal/testwait"
)

// TestGoldLayout: a new lake's gold is unpartitioned and committed with the
// epochs (so it is as fresh as silver), its files time-ordered; a lake whose
// gold was created partitioned by device keeps that layout.
func TestGoldLayout(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(map[bool]string{false: "new", true: "partitioned"}[legacy], func(t *testing.T) {
			ctx := context.Background()
			l := lake.NewMemory()
			if legacy {
				if _, err := delta.Open[schema.GoldRow](ctx, l, schema.Gold, delta.Options{PartitionColumns: []string{"device"}}); err != nil {
					t.Fatal(err)
				}
			}
			p, err := stages.New(l, stages.Options{MaxSkew: -1, CommitInterval: 10 * time.Millisecond, SkipShutdownScan: true})
			if err != nil {
				t.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- p.Run(rctx) }()
			t0 := int64(1_790_000_000) * 1e6
			rng := rand.New(rand.NewPCG(1, 2))
			for s := range 6 {
				for _, dev := range []string{"dev-a", "dev-b"} {
					b := makeBatches(dev, 1, 1, 400, t0+int64(s)*4e6, rng)[0]
					b.Seq = uint64(s + 1)
					if err := p.Submit(ctx, landing.Landed{Name: "landing/x", Batch: b, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
						t.Fatal(err)
					}
				}
			}
			if !legacy {
				// Gold reaches the lake with the epochs, not a minute later
				// (testwait.Deadline is 30 s).
				testwait.Until(t, "gold in the lake once its windows were final", func() bool {
					snap, err := delta.Load(ctx, l, schema.Gold)
					return err == nil && goldRows(t, l, snap) > 0
				})
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			snap, err := delta.Load(ctx, l, schema.Gold)
			if err != nil {
				t.Fatal(err)
			}
			if legacy != (len(snap.Metadata.PartitionColumns) == 1) {
				t.Fatalf("partition columns %v", snap.Metadata.PartitionColumns)
			}
			rows, err := delta.ReadFiles[schema.GoldRow](ctx, l, schema.Gold, snap.Files(), nil)
			if err != nil || len(rows) == 0 {
				t.Fatalf("%d gold rows, %v", len(rows), err)
			}
			for _, f := range snap.Files() {
				if legacy != strings.HasPrefix(f.Path, "device=") {
					t.Errorf("file %s", f.Path)
				}
				if !legacy {
					fr, err := delta.ReadFiles[schema.GoldRow](ctx, l, schema.Gold, []delta.AddFile{f}, nil)
					if err != nil {
						t.Fatal(err)
					}
					for i := 1; i < len(fr); i++ {
						if fr[i].WindowStart < fr[i-1].WindowStart {
							t.Fatalf("file %s not in time order at row %d", f.Path, i)
						}
					}
				}
			}
		})
	}
}

func goldRows(t *testing.T, l lake.Lake, snap *delta.Snapshot) int {
	t.Helper()
	rows, err := delta.ReadFiles[schema.GoldRow](context.Background(), l, schema.Gold, snap.Files(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return len(rows)
}
