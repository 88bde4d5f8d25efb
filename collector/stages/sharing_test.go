package stages_test

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
	"github.com/pilake/pilake/internal/testwait"
)

// foreignCommit commits actions to table as another engine (Databricks)
// would: the next version, put-if-absent, raw JSON.
func foreignCommit(t *testing.T, l lake.Lake, table string, actions ...map[string]any) {
	t.Helper()
	snap, err := delta.Load(t.Context(), l, table)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	actions = append([]map[string]any{{"commitInfo": map[string]any{"operation": "SET TBLPROPERTIES", "engineInfo": "Databricks-Runtime/15.4"}}}, actions...)
	for _, a := range actions {
		line, _ := json.Marshal(a)
		b.Write(line)
		b.WriteByte('\n')
	}
	if err := l.PutIfAbsent(t.Context(), delta.CommitName(table, snap.Version+1), b.Bytes()); err != nil {
		t.Fatal(err)
	}
}

// bronzeMetadata is bronze's metaData with a nullable column added and
// configuration conf, as Databricks writes it after ALTER TABLE.
func bronzeMetadata(t *testing.T, l lake.Lake, conf map[string]string) map[string]any {
	t.Helper()
	snap, err := delta.Load(t.Context(), l, schema.Bronze)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := snap.Schema()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sc.Field("site"); !ok {
		sc.Fields = append(sc.Fields, delta.Field{Name: "site", Type: "string", Nullable: true, Metadata: map[string]any{}})
	}
	md := snap.Metadata
	md.SchemaString = sc.String()
	md.Configuration = conf
	return map[string]any{"metaData": md}
}

func submitBatches(t *testing.T, r *run, l lake.Lake, bs []*wire.Batch) {
	t.Helper()
	for _, b := range bs {
		name := landOne(t, l, time.UnixMicro(t0), b)
		if err := r.p.Submit(t.Context(), landing.Landed{Name: name, Batch: b, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSharingWithDatabricks: another writer (Databricks) enables on bronze
// what pilake's appends honour — deletion vectors, change data feed,
// append-only, a CHECK constraint the readings satisfy, domain metadata,
// v2 checkpoints, a new nullable column — and pilake keeps appending, its
// checkpoints keeping the protocol's features and the domain metadata. Then
// it enables what pilake cannot honour (row tracking) and adds a constraint
// the readings break: the stages wait, count and log the refusal, do not
// exit, and commit everything once the other writer takes it back.
func TestSharingWithDatabricks(t *testing.T) {
	l := newLake(t)
	rng := rand.New(rand.NewPCG(31, 32))
	opts := stages.Options{MaxSkew: -1, Clock: clockAt(t0), MaxEpochRows: 1000, CheckpointInterval: 2, RefusedRetry: 10 * time.Millisecond}
	bs := makeBatches("dev-a", 1, 40, 200, t0, rng)

	r := start(t, l, opts)
	submitBatches(t, r, l, bs[:10])
	r.stop(t)

	features := []string{"appendOnly", "invariants", "checkConstraints", "changeDataFeed", "deletionVectors", "domainMetadata", "v2Checkpoint"}
	conf := map[string]string{"delta.enableChangeDataFeed": "true", "delta.enableDeletionVectors": "true", "delta.appendOnly": "true",
		"delta.constraints.temp_range": "temp_c > -100 AND temp_c < 200 AND pressure_pa IS NOT NULL"}
	foreignCommit(t, l, schema.Bronze,
		map[string]any{"protocol": map[string]any{"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": []string{"deletionVectors", "v2Checkpoint"}, "writerFeatures": features}},
		bronzeMetadata(t, l, conf),
		map[string]any{"domainMetadata": map[string]any{"domain": "delta.clustering", "configuration": `{"clusteringColumns":[["device"]]}`, "removed": false}})

	r = start(t, l, opts)
	submitBatches(t, r, l, bs[10:20])
	r.stop(t)
	if st := r.p.Stats(); st.Refusals != 0 {
		t.Fatalf("%d refusals on a table with features pilake honours", st.Refusals)
	}
	snap, err := delta.Load(t.Context(), l, schema.Bronze)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(readAll[schema.BronzeRow](t, l, schema.Bronze)); n != 20*200 {
		t.Fatalf("bronze holds %d readings, want %d", n, 20*200)
	}
	if snap.Protocol.MinWriterVersion != 7 || len(snap.Protocol.WriterFeatures) != len(features) {
		t.Errorf("protocol after pilake's commits and checkpoints: %+v", snap.Protocol)
	}
	if _, ok := snap.Domain("delta.clustering"); !ok {
		t.Error("domain metadata lost")
	}

	// Row tracking: pilake would have to assign row ids; it refuses, and
	// waits instead of exiting.
	foreignCommit(t, l, schema.Bronze, map[string]any{"protocol": map[string]any{"minReaderVersion": 3, "minWriterVersion": 7,
		"readerFeatures": []string{"deletionVectors", "v2Checkpoint"}, "writerFeatures": append(features, "rowTracking")}})
	r = start(t, l, opts)
	testwait.Until(t, "a refusal at start", func() bool { st := r.p.Stats(); return st.Refusing && st.Refusals > 0 })
	foreignCommit(t, l, schema.Bronze, map[string]any{"protocol": map[string]any{"minReaderVersion": 3, "minWriterVersion": 7,
		"readerFeatures": []string{"deletionVectors", "v2Checkpoint"}, "writerFeatures": features}})
	testwait.Until(t, "the refusal to end", func() bool { return !r.p.Stats().Refusing })
	submitBatches(t, r, l, bs[20:30])
	r.stop(t)
	if n := len(readAll[schema.BronzeRow](t, l, schema.Bronze)); n != 30*200 {
		t.Fatalf("bronze holds %d readings after the refusal ended, want %d", n, 30*200)
	}

	// A constraint the readings break: the epoch waits, then commits once
	// the constraint is dropped.
	conf2 := map[string]string{"delta.appendOnly": "true", "delta.constraints.freezing": "temp_c < 0"}
	foreignCommit(t, l, schema.Bronze, bronzeMetadata(t, l, conf2))
	r = start(t, l, opts)
	submitBatches(t, r, l, bs[30:40])
	testwait.Until(t, "a refused commit", func() bool { return r.p.Stats().Refusing })
	foreignCommit(t, l, schema.Bronze, bronzeMetadata(t, l, map[string]string{"delta.appendOnly": "true"}))
	r.stop(t)
	if n := len(readAll[schema.BronzeRow](t, l, schema.Bronze)); n != 40*200 {
		t.Fatalf("bronze holds %d readings after the constraint was dropped, want %d", n, 40*200)
	}
	if st := r.p.Stats(); st.Refusing || st.Refusals == 0 {
		t.Errorf("stats after the constraint was dropped: refusing %v, %d refusals", st.Refusing, st.Refusals)
	}
}
