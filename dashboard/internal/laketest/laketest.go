package laketest

import (
	"context"
	"testing"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// Writer appends rows to a lake's silver (unpartitioned) and gold
// (partitioned by device) tables, one data file per call and device.
type Writer struct {
	t      testing.TB
	silver *delta.Table
	gold   *delta.Table
}

// NewWriter opens (creating) the tables in l.
func NewWriter(t testing.TB, l lake.Lake) *Writer {
	t.Helper()
	ctx := context.Background()
	s, err := delta.Open[schema.SilverRow](ctx, l, schema.Silver, delta.Options{})
	if err != nil {
		t.Fatalf("opening silver: %v", err)
	}
	g, err := delta.Open[schema.GoldRow](ctx, l, schema.Gold, delta.Options{PartitionColumns: []string{"device"}})
	if err != nil {
		t.Fatalf("opening gold: %v", err)
	}
	return &Writer{t: t, silver: s, gold: g}
}

// Silver commits rows to silver as one file.
func (w *Writer) Silver(rows ...schema.SilverRow) {
	w.t.Helper()
	ctx := context.Background()
	f, err := delta.WriteFile(ctx, w.silver, rows, nil)
	if err != nil {
		w.t.Fatalf("writing silver: %v", err)
	}
	if _, err := w.silver.Commit(ctx, []delta.Action{{Add: &f}}, "WRITE"); err != nil {
		w.t.Fatalf("committing silver: %v", err)
	}
}

// Gold commits rows to gold, one file per device.
func (w *Writer) Gold(rows ...schema.GoldRow) {
	w.t.Helper()
	ctx := context.Background()
	by := map[string][]schema.GoldRow{}
	var order []string
	for _, r := range rows {
		if _, ok := by[r.Device]; !ok {
			order = append(order, r.Device)
		}
		by[r.Device] = append(by[r.Device], r)
	}
	var acts []delta.Action
	for _, d := range order {
		f, err := delta.WriteFile(ctx, w.gold, by[d], map[string]string{"device": d})
		if err != nil {
			w.t.Fatalf("writing gold: %v", err)
		}
		acts = append(acts, delta.Action{Add: &f})
	}
	if _, err := w.gold.Commit(ctx, acts, "WRITE"); err != nil {
		w.t.Fatalf("committing gold: %v", err)
	}
}
