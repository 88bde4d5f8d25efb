package stages_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
	"github.com/pilake/pilake/scripts/testenv"
)

// The stages on Azure Blob storage (Azurite): commits put-if-absent with
// If-None-Match, recovery after a restart, a concurrent Delta writer.
func TestPipelineOnAzurite(t *testing.T) {
	az := testenv.AzuriteBlob(t)
	l, err := lake.NewAzure(t.Context(), lake.AzureOptions{ConnectionString: az.ConnectionString(),
		Container: fmt.Sprintf("stages-%d", rand.Uint32()), Prefix: "pilake"})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(41, 42))
	bs := append(makeBatches("az-1", 1, 12, 200, t0, rng), makeBatches("az-2", 2, 12, 200, t0+50, rng)...)
	opts := stages.Options{MaxSkew: -1, Clock: clockAt(t0), MaxEpochRows: 1000, CheckpointInterval: 3}
	r := start(t, l, opts)
	for _, b := range bs[:12] {
		if err := r.p.Submit(t.Context(), landing.Landed{Name: landOne(t, l, time.UnixMicro(t0), b), Batch: b, ReceivedAt: time.UnixMicro(t0), Source: "mqtt"}); err != nil {
			t.Fatal(err)
		}
	}
	r.stop(t)
	// Landed (in a segment, as the ingest side lands) while the collector
	// was down: the next run's recovery lands them.
	landSegment(t, l, "00000000000000d1", 1, time.UnixMicro(t0), "mqtt", bs[12:]...)
	r = start(t, l, opts)
	r.stop(t)
	if st := r.p.Stats(); st.Readings != 12*200 {
		t.Fatalf("second run landed %d readings, want %d", st.Readings, 12*200)
	}
	bronze := readAll[schema.BronzeRow](t, l, schema.Bronze)
	if len(bronze) != 24*200 {
		t.Fatalf("bronze %d rows", len(bronze))
	}
	var sum int64
	for _, s := range readAll[schema.SilverRow](t, l, schema.Silver) {
		sum += s.Count
	}
	if sum != 24*200 {
		t.Fatalf("sum(silver.count) = %d", sum)
	}
	snap, err := delta.Load(t.Context(), l, schema.Bronze)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := snap.TxnVersion(stages.AppID); v < 2 {
		t.Fatalf("bronze txn version %d", v)
	}
	if _, err := l.Get(t.Context(), delta.LastCheckpointName(schema.Bronze)); err != nil {
		t.Fatalf("no checkpoint on Azure: %v", err)
	}
}
