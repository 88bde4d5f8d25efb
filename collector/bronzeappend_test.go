package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/bronzeapp"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/internal/testwait"
	"github.com/pilake/pilake/scripts/testenv"
)

// Three ingest-only collectors on one MQTT $share group and one lake, each
// appending bronze itself (--stages=false --bronze-append NAME): every
// reading is in bronze exactly once, each collector committed under its own
// txn app id, and a stage collector started afterwards on the same lake
// does not take their segments in again.
func TestThreeCollectorsAppendBronze(t *testing.T) {
	for _, where := range []string{"local", "azurite"} {
		t.Run(where, func(t *testing.T) {
			url := testenv.PrivateMosquitto(t)
			base := testConfig(t)
			var lk lake.Lake
			if where == "azurite" {
				az := testenv.AzuriteBlob(t)
				base.Lake = ""
				base.AzureConnectionString = az.ConnectionString()
				base.AzureContainer = fmt.Sprintf("bronzeapp-%d", rand.Uint32())
				var err error
				if lk, err = lake.NewAzure(t.Context(), base.azureOptions(base.AzureContainer)); err != nil {
					t.Fatal(err)
				}
			} else {
				var err error
				if lk, err = lake.NewLocal(base.Lake); err != nil {
					t.Fatal(err)
				}
			}
			group := fmt.Sprintf("g%d", rand.Uint32())
			var rcs []*runningCollector
			for i := range 3 {
				cfg := base
				cfg.Broker, cfg.ShareGroup = url, group
				cfg.ClientID = fmt.Sprintf("collector-%d-%d", i, rand.Uint32())
				cfg.Stages, cfg.BronzeAppend = false, fmt.Sprintf("c%d", i)
				cfg.MetricsAddr = "127.0.0.1:0"
				if err := cfg.Validate(); err != nil {
					t.Fatal(err)
				}
				rcs = append(rcs, startCollector(t, cfg))
			}
			for _, rc := range rcs {
				waitReady(t, rc)
			}
			const devices, per, n = 4, 15, 50
			readings := agents(t, url, devices, per, n)
			// The broker acknowledged every publish; wait until the three landed all.
			deadline := time.Now().Add(30 * time.Second)
			for {
				total := 0
				for _, rc := range rcs {
					total += metric(t, rc, "pilake_collector_batches_in_total")
				}
				if total == devices*per {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("landed %d of %d batches", total, devices*per)
				}
				time.Sleep(20 * time.Millisecond)
			}
			// The operator's metrics in this mode: readings committed to
			// bronze (all of them, between the three), epochs, commit latency.
			deadline = time.Now().Add(30 * time.Second)
			for {
				total := 0
				for _, rc := range rcs {
					total += metric(t, rc, "pilake_collector_bronze_readings_total")
				}
				if total == readings {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("bronze_readings_total says %d of %d readings committed", total, readings)
				}
				time.Sleep(20 * time.Millisecond)
			}
			for i, rc := range rcs {
				if e, c, b := metric(t, rc, "pilake_collector_epochs_total"), metric(t, rc, "pilake_collector_bronze_commit_seconds_count"),
					metric(t, rc, "pilake_collector_bronze_batches_total"); b > 0 && (e == 0 || c != e) {
					t.Errorf("collector %d: %d batches committed in %d epochs, %d commit latencies", i, b, e, c)
				}
			}
			for _, rc := range rcs {
				rc.stop(t)
			}
			checkBronzeOnce(t, lk, devices, per, n, readings)
			tbl, err := delta.Open[schema.BronzeRow](t.Context(), lk, schema.Bronze, delta.Options{})
			if err != nil {
				t.Fatal(err)
			}
			committed := 0
			for i := range 3 {
				if _, ok := tbl.Snapshot().TxnVersion(bronzeapp.AppIDPrefix + fmt.Sprintf("c%d", i)); ok {
					committed++
				}
			}
			if committed < 2 {
				t.Errorf("%d of 3 collectors committed under their own app id: the load was not shared", committed)
			}
			// A stage collector on the same lake: its scan skips their segments.
			sc := base
			sc.Listen = "127.0.0.1:0"
			rc := startCollector(t, sc)
			rc.stop(t)
			checkBronzeOnce(t, lk, devices, per, n, readings)
		})
	}
}

func waitReady(t *testing.T, rc *runningCollector) {
	t.Helper()
	testwait.Until(t, "the collector to be ready (/readyz 200)", func() bool {
		code, _ := get(t, rc.st.Metrics+"/readyz")
		return code == 200
	})
}

func metric(t *testing.T, rc *runningCollector, name string) int {
	t.Helper()
	_, m := get(t, rc.st.Metrics+"/metrics")
	for _, line := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

// checkBronzeOnce reads bronze and checks every reading agents() sent is
// there exactly once.
func checkBronzeOnce(t *testing.T, lk lake.Lake, devices, per, n, readings int) {
	t.Helper()
	rows, err := delta.ReadTable[schema.BronzeRow](t.Context(), lk, schema.Bronze, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, r := range rows {
		seen[fmt.Sprintf("%s/%d/%d/%d", r.Device, r.Boot, r.Seq, r.TS)]++
	}
	twice := 0
	for _, c := range seen {
		if c > 1 {
			twice++
		}
	}
	if len(rows) != readings || len(seen) != readings || twice > 0 {
		t.Fatalf("bronze holds %d rows, %d distinct readings, %d more than once; want %d once each", len(rows), len(seen), twice, readings)
	}
	batches := map[string]bool{}
	for _, r := range rows {
		batches[fmt.Sprintf("%s/%d/%d", r.Device, r.Boot, r.Seq)] = true
	}
	if len(batches) != devices*per {
		t.Fatalf("bronze holds %d batches, want %d", len(batches), devices*per)
	}
}
