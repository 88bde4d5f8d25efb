package stages_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
	"github.com/pilake/pilake/internal/clock"
	"github.com/pilake/pilake/internal/testwait"
)

// noChecksumLake fails every version checksum (.crc) write.
type noChecksumLake struct{ lake.Lake }

func (n noChecksumLake) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	if strings.HasSuffix(name, ".crc") {
		return errors.New("injected .crc failure")
	}
	return n.Lake.PutIfAbsent(ctx, name, data)
}

// TestStagesWriteChecksums: every commit the stages make to bronze, silver,
// silver_late and gold (appends, compaction, with checkpoints every 2
// commits) has a .crc agreeing with the table loaded at that version; when
// .crc writes fail, nothing else does: every reading is committed and the
// failures are counted.
func TestStagesWriteChecksums(t *testing.T) {
	for _, failing := range []bool{false, true} {
		l := newLake(t)
		var lk lake.Lake = l
		if failing {
			lk = noChecksumLake{l}
		}
		rng := rand.New(rand.NewPCG(41, 42))
		clk := clock.NewFake(time.UnixMicro(t0))
		r := start(t, lk, stages.Options{MaxSkew: -1, Clock: clk, MaxEpochRows: 1000, CheckpointInterval: 2, CompactEvery: 2,
			AllowedLateness: 2 * time.Second})
		want := 0
		send := func(seq uint64) {
			t.Helper()
			for d, dev := range []string{"dev-a", "dev-b"} {
				for i, b := range makeBatches(dev, uint64(d+1), 10, 200, clk.Now().UnixMicro()+int64(d)*1000, rng) {
					b.Seq = seq + uint64(i)
					name := landOne(t, l, clk.Now(), b)
					if err := r.p.Submit(t.Context(), landing.Landed{Name: name, Batch: b, ReceivedAt: clk.Now(), Source: "mqtt"}); err != nil {
						t.Fatal(err)
					}
					want += len(b.Readings)
				}
			}
		}
		send(1)
		testwait.Until(t, "the first readings committed", func() bool { return r.p.Stats().Readings == int64(want) })
		// A day later the first day's files are compacted (every 2 epochs).
		clk.Advance(26 * time.Hour)
		for i := range 3 {
			send(uint64(100 * (i + 1)))
			testwait.Until(t, "readings committed", func() bool { return r.p.Stats().Readings == int64(want) })
		}
		testwait.Until(t, "a compaction", func() bool { return r.p.Stats().Compactions > 0 })
		r.stop(t)
		st := r.p.Stats()
		if st.Readings != int64(want) {
			t.Fatalf("failing .crc writes %v: %d readings in bronze, want %d", failing, st.Readings, want)
		}
		if failing {
			if st.ChecksumErrors == 0 {
				t.Error("failed .crc writes not counted")
			}
			continue
		}
		if st.ChecksumErrors != 0 {
			t.Errorf("%d .crc writes failed", st.ChecksumErrors)
		}
		for _, table := range []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold} {
			last, err := delta.Load(t.Context(), l, table)
			if err != nil {
				t.Fatal(err)
			}
			for v := int64(0); v <= last.Version; v++ {
				data, err := l.Get(t.Context(), delta.ChecksumName(table, v))
				if err != nil {
					t.Errorf("%s version %d: %v", table, v, err)
					continue
				}
				var c delta.VersionChecksum
				if err := json.Unmarshal(data, &c); err != nil {
					t.Fatal(err)
				}
				snap, err := delta.LoadVersion(t.Context(), l, table, v)
				if err != nil {
					t.Fatal(err)
				}
				var size int64
				for _, f := range snap.Files() {
					size += f.Size
				}
				if c.NumFiles != int64(snap.NumFiles()) || c.TableSizeBytes != size || c.Metadata.ID != snap.Metadata.ID {
					t.Errorf("%s version %d: .crc %d files of %d bytes, the table %d files of %d bytes", table, v, c.NumFiles, c.TableSizeBytes, snap.NumFiles(), size)
				}
			}
		}
	}
}
