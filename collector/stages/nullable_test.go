package stages_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/schema/schematest"
	"github.com/pilake/pilake/collector/stages"
)

// writeOld commits rows to table through a Table of the old row type.
func writeOld[T any](t *testing.T, l lake.Lake, table string, rows []T) *delta.Table {
	t.Helper()
	ctx := t.Context()
	tb, err := delta.Open[T](ctx, l, table, delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	add, err := delta.WriteFile(ctx, tb, rows, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
		t.Fatal(err)
	}
	return tb
}

// notNull commits a metaData action declaring cols NOT NULL (nullable
// false), as Spark writes a NOT NULL column.
func notNull(t *testing.T, tb *delta.Table, cols ...string) {
	t.Helper()
	md := tb.Snapshot().Metadata
	st, err := delta.ParseSchema(md.SchemaString)
	if err != nil {
		t.Fatal(err)
	}
	for i := range st.Fields {
		if slices.Contains(cols, st.Fields[i].Name) {
			st.Fields[i].Nullable = false
		}
	}
	md.SchemaString = st.String()
	if _, err := tb.Commit(t.Context(), []delta.Action{{MetaData: &md}}, "CHANGE COLUMN"); err != nil {
		t.Fatal(err)
	}
}

// TestNullPressureAndHumidity: a lake written before issue 13 (required
// pressure and humidity in every file, bronze's log declaring both NOT
// NULL) is opened by the stages, which relax the columns with a metaData
// commit and append readings without pressure (the Azure simulator's,
// wire.FlagNoPressure) and without humidity (a BMP280's): bronze holds
// nulls there, silver's and gold's pressure (humidity) is null for windows
// with none and counts every reading. Old and new files read back through
// pilake's reader and DuckDB, before and after compacting them together.
func TestNullPressureAndHumidity(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	oldTS := t0 + 3600*1_000_000 // the same day as the new rows: compacted together
	old := []schematest.BronzeV1{{Device: "dev-old", TS: oldTS, TempC: 21, PressurePa: 101325, HumidityRH: 40, Fresh: true, Boot: 1, Seq: 1, ReceivedAt: oldTS, Source: "mqtt"},
		{Device: "dev-old", TS: oldTS + 2500, TempC: 21.5, PressurePa: 101326, HumidityRH: 41, Boot: 1, Seq: 1, ReceivedAt: oldTS, Source: "mqtt"}}
	bt := writeOld(t, l, schema.Bronze, old)
	notNull(t, bt, "pressure_pa", "humidity_rh")
	writeOld(t, l, schema.Silver, []schematest.SilverV1{{Device: "dev-old", WindowStart: oldTS, WindowEnd: oldTS + 1_000_000, Count: 2, FreshCount: 1,
		TempAvg: 21.25, TempMin: 21, TempMax: 21.5, PressureAvg: 101325.5, PressureMin: 101325, PressureMax: 101326, HumidityAvg: 40.5, HumidityMin: 40, HumidityMax: 41}})

	rng := rand.New(rand.NewPCG(21, 22))
	flags := map[string]uint8{"dev-bme": 0, "dev-sim": wire.FlagNoPressure, "dev-bmp": wire.FlagNoHumidity}
	r := start(t, l, stages.Options{MaxSkew: -1, Clock: clockAt(t0), AllowedLateness: time.Second})
	per := 200
	for d, dev := range []string{"dev-bme", "dev-sim", "dev-bmp"} {
		for _, b := range makeBatches(dev, uint64(d+1), 10, per, t0, rng) {
			b.Flags |= flags[dev]
			for i := range b.Readings {
				if b.Flags&wire.FlagNoPressure != 0 {
					b.Readings[i].Press = 0
				}
				if b.Flags&wire.FlagNoHumidity != 0 {
					b.Readings[i].Hum = 0
				}
			}
			name := landOne(t, l, time.UnixMicro(t0), b)
			if err := r.p.Submit(ctx, landing.Landed{Name: name, Batch: b, ReceivedAt: time.UnixMicro(t0), Source: "iothub"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.stop(t)

	snap, err := delta.Load(ctx, l, schema.Bronze)
	if err != nil {
		t.Fatal(err)
	}
	st, err := snap.Schema()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"pressure_pa", "humidity_rh"} {
		if f, _ := st.Field(c); !f.Nullable {
			t.Errorf("bronze.%s still NOT NULL after the stages opened the table", c)
		}
	}

	check := func(t *testing.T, when string) {
		bronze := readAll[schema.BronzeRow](t, l, schema.Bronze)
		if len(bronze) != 3*10*per+len(old) {
			t.Fatalf("%s: bronze has %d rows, want %d", when, len(bronze), 3*10*per+len(old))
		}
		for _, b := range bronze {
			wantP, wantH := b.Device != "dev-sim", b.Device != "dev-bmp"
			if (b.PressurePa != nil) != wantP || (b.HumidityRH != nil) != wantH {
				t.Fatalf("%s: bronze row %+v: pressure present %v humidity present %v, want %v %v", when, b, b.PressurePa != nil, b.HumidityRH != nil, wantP, wantH)
			}
			if b.Device == "dev-old" && (*b.PressurePa < 101325 || *b.HumidityRH < 40) {
				t.Fatalf("%s: old row %+v changed", when, b)
			}
		}
		counts := map[string]int64{}
		for _, s := range readAll[schema.SilverRow](t, l, schema.Silver) {
			counts[s.Device] += s.Count
			wantP, wantH := s.Device != "dev-sim", s.Device != "dev-bmp"
			if (s.PressureAvg != nil) != wantP || (s.PressureMin != nil) != wantP || (s.PressureMax != nil) != wantP ||
				(s.HumidityAvg != nil) != wantH || (s.HumidityMin != nil) != wantH || (s.HumidityMax != nil) != wantH {
				t.Fatalf("%s: silver row %+v", when, s)
			}
			if s.Count == 0 || s.TempMin > s.TempAvg || s.TempAvg > s.TempMax {
				t.Fatalf("%s: silver row %+v", when, s)
			}
		}
		for _, dev := range []string{"dev-bme", "dev-sim", "dev-bmp"} {
			if counts[dev] != int64(10*per) {
				t.Errorf("%s: silver counts %d readings of %s, want %d", when, counts[dev], dev, 10*per)
			}
		}
		for _, g := range readAll[schema.GoldRow](t, l, schema.Gold) {
			if (g.PressurePa != nil) != (g.Device != "dev-sim") || (g.HumidityRH != nil) != (g.Device != "dev-bmp") {
				t.Fatalf("%s: gold row %+v", when, g)
			}
		}
		// DuckDB, sharing no code with pilake, sees the same nulls.
		node, dir := duckdbReader(t)
		cmd := exec.Command(node, filepath.Join(dir, "check.mjs"), l.Root(), schema.Bronze, schema.Silver, schema.Gold)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: independent reader: %v", when, err)
		}
		var got map[string]struct {
			Rows  int              `json:"rows"`
			Nulls map[string]int64 `json:"nulls"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		silverSim := int64(0)
		for _, s := range readAll[schema.SilverRow](t, l, schema.Silver) {
			if s.Device == "dev-sim" {
				silverSim++
			}
		}
		if g := got[schema.Bronze]; g.Rows != len(bronze) || g.Nulls["pressure_pa"] != int64(10*per) || g.Nulls["humidity_rh"] != int64(10*per) || g.Nulls["temp_c"] != 0 {
			t.Errorf("%s: DuckDB reads bronze as %+v, want %d rows, %d null pressures and humidities", when, g, len(bronze), 10*per)
		}
		if g := got[schema.Silver]; g.Nulls["pressure_avg"] != silverSim || g.Nulls["pressure_min"] != silverSim || g.Nulls["temp_avg"] != 0 {
			t.Errorf("%s: DuckDB reads silver as %+v, want %d null pressures", when, g, silverSim)
		}
	}
	check(t, "appended")

	// Compacting old files (required columns) with new ones (nullable).
	for _, name := range []string{schema.Bronze, schema.Silver} {
		var n int
		var err error
		o := delta.CompactOptions{Grace: time.Minute, Bucket: 24 * time.Hour, DayBucket: 24 * time.Hour}
		opts := delta.Options{Now: func() time.Time { return time.UnixMicro(t0).Add(72 * time.Hour) }}
		if name == schema.Bronze {
			tb, oerr := delta.Open[schema.BronzeRow](ctx, l, name, opts)
			if oerr != nil {
				t.Fatal(oerr)
			}
			n, err = delta.Compact[schema.BronzeRow](ctx, tb, o)
		} else {
			tb, oerr := delta.Open[schema.SilverRow](ctx, l, name, opts)
			if oerr != nil {
				t.Fatal(oerr)
			}
			n, err = delta.Compact[schema.SilverRow](ctx, tb, o)
		}
		if err != nil || n < 2 {
			t.Fatalf("compacting %s: %d files, %v", name, n, err)
		}
	}
	check(t, "compacted")
	// The compacted bronze file holds both: old rows and nulls.
	files, err := delta.Load(ctx, l, schema.Bronze)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(files.Files()); n != 1 {
		t.Errorf("bronze has %d files after compaction, want 1", n)
	}
}

// TestNotNullRefused: a table another writer declared NOT NULL after the
// stages opened it gets no file with nulls in that column.
func TestNotNullRefused(t *testing.T) {
	ctx := context.Background()
	l := lake.NewMemory()
	tb, err := delta.Open[schema.BronzeRow](ctx, l, schema.Bronze, delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	other, err := delta.Open[schematest.BronzeV1](ctx, l, schema.Bronze, delta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	notNull(t, other, "pressure_pa")
	if err := tb.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	bw := delta.NewBronzeWriter(false)
	bw.WriteFlags([]wire.Reading{{TimeUS: t0, Temp: 2000}}, &schema.BronzeRow{Device: "d", Boot: 1, Seq: 1, Source: "iothub"}, wire.FlagNoPressure)
	data, err := bw.Close()
	if err != nil {
		t.Fatal(err)
	}
	add, err := tb.PutFile(ctx, data, bw.Stats(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); !errors.Is(err, delta.ErrConstraint) {
		t.Fatalf("commit of nulls into a NOT NULL column: %v, want ErrConstraint", err)
	}
}
