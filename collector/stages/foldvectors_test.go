package stages

import (
	"bytes"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/schema"
)

var updateVectors = flag.Bool("update-fold-vectors", false, "rewrite testdata/fold_vectors.json from the Go fold")

// foldVectors is the fold's input, as Databricks sees it in bronze (one
// entry per landed batch, in landing order), and the silver, silver_late and
// gold rows the collector makes of it. scripts/databricks/test_pilake_fold.py
// runs the Python fold on the same input and must produce the same rows.
type foldVectors struct {
	Comment        string                 `json:"comment"`
	WindowUS       int64                  `json:"window_us"`
	LatenessUS     int64                  `json:"lateness_us"`
	MovingAverages []int                  `json:"moving_averages"`
	Batches        []vectorBatch          `json:"batches"`
	CloseAll       bool                   `json:"close_all"`
	Silver         []schema.SilverRow     `json:"silver"`
	SilverLate     []schema.SilverLateRow `json:"silver_late"`
	Gold           []schema.GoldRow       `json:"gold"`
}

type vectorBatch struct {
	Device     string `json:"device"`
	Boot       int64  `json:"boot"`
	Seq        int64  `json:"seq"`
	ReceivedAt int64  `json:"received_at"`
	Source     string `json:"source"`
	// Readings are bronze's [ts, temp_c, pressure_pa, humidity_rh, fresh].
	Readings [][5]any `json:"readings"`
}

// vectorInput makes batches of four devices: random 64-bit boot ids (above
// 2^53, one negative as bronze stores it), batches arriving out of order by
// up to 14 s (so some readings are late for the 10 s lateness), a device
// whose clock runs 40 s ahead of the others, gaps, and a reboot; and
// missing values: the Azure simulator's device never has pressure, the
// rebooted device comes back as a BMP280 (no humidity), and two of
// pi-kitchen's batches have no pressure (windows with and without it).
func vectorInput() []*wire.Batch {
	rng := rand.New(rand.NewPCG(13, 2026))
	var all []*wire.Batch
	boots := map[string]uint64{"pi-kitchen": 0x9e3779b97f4a7c15, "pi-garage": 0x00f0_0000_0000_0001, "pi-fast-clock": 0x7fff_ffff_ffff_fff3,
		"Raspberry_20Pi_20Web_20Client": 0xfedc_ba98_7654_3210}
	for _, dev := range []string{"pi-kitchen", "pi-garage", "pi-fast-clock", "Raspberry_20Pi_20Web_20Client"} {
		ts := int64(1_767_225_600)*sec + rng.Int64N(sec)
		if dev == "pi-fast-clock" {
			ts += 40 * sec
		}
		boot := boots[dev]
		for s := 1; s <= 14; s++ {
			if dev == "pi-garage" && s == 9 {
				boot, ts = 0x0123_4567_89ab_cdef, ts+2*sec // reboot: a new boot id, numbering restarts
			}
			seq := uint64(s)
			if boot == 0x0123_4567_89ab_cdef {
				seq = uint64(s - 8)
			}
			b := &wire.Batch{DeviceID: dev, BootID: boot, Seq: seq}
			switch {
			case dev == "Raspberry_20Pi_20Web_20Client":
				b.Flags = wire.FlagNoPressure
			case boot == 0x0123_4567_89ab_cdef:
				b.Flags = wire.FlagNoHumidity
			case dev == "pi-kitchen" && (s == 5 || s == 10):
				b.Flags = wire.FlagNoPressure
			}
			for range 20 {
				r := wire.Reading{TimeUS: ts, Temp: 1500 + rng.Int32N(1500), Press: 95000*256 + rng.Uint32N(1<<18),
					Hum: 30*1024 + rng.Uint32N(40*1024), Fresh: rng.IntN(4) != 0}
				if b.Flags&wire.FlagNoPressure != 0 {
					r.Press = 0
				}
				if b.Flags&wire.FlagNoHumidity != 0 {
					r.Hum = 0
				}
				b.Readings = append(b.Readings, r)
				ts += 50_000 + rng.Int64N(20)
			}
			all = append(all, b)
			if rng.IntN(6) == 0 {
				ts += rng.Int64N(4 * sec)
			}
		}
	}
	// arrival order: each batch's start plus a delay of 0..14 s, so that a
	// batch can come after newer ones of its device by more than the lateness
	rng2 := rand.New(rand.NewPCG(7, 7))
	keys := map[*wire.Batch]int64{}
	for _, b := range all {
		keys[b] = b.Readings[0].TimeUS + rng2.Int64N(14*sec)
		if b.DeviceID == "pi-fast-clock" {
			keys[b] -= 40 * sec // it arrives in real time, its clock is ahead
		}
	}
	sortBy(all, func(a, b *wire.Batch) bool { return keys[a] < keys[b] })
	return all
}

func sortBy(s []*wire.Batch, less func(a, b *wire.Batch) bool) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && less(s[j], s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestFoldVectors(t *testing.T) {
	v := foldVectors{
		Comment:    "Written by collector/stages TestFoldVectors (go test ./collector/stages -run TestFoldVectors -update-fold-vectors); read by scripts/databricks/test_pilake_fold.py.",
		WindowUS:   DefaultWindow.Microseconds(),
		LatenessUS: DefaultAllowedLateness.Microseconds(), MovingAverages: DefaultMovingAverages, CloseAll: true,
	}
	f := newFolder(v.WindowUS, v.LatenessUS, v.MovingAverages)
	received := int64(1_767_225_700) * sec
	late := 0
	for i, b := range vectorInput() {
		row := schema.BronzeRow{Device: b.DeviceID, Boot: int64(b.BootID), Seq: int64(b.Seq), ReceivedAt: received + int64(i)*1000, Source: "mqtt"}
		vb := vectorBatch{Device: row.Device, Boot: row.Boot, Seq: row.Seq, ReceivedAt: row.ReceivedAt, Source: row.Source}
		for _, r := range b.Readings {
			var p, h any // null when the batch has none
			if b.Flags&wire.FlagNoPressure == 0 {
				p = r.PressurePa()
			}
			if b.Flags&wire.FlagNoHumidity == 0 {
				h = r.HumidityRH()
			}
			vb.Readings = append(vb.Readings, [5]any{r.TimeUS, r.TempC(), p, h, r.Fresh})
		}
		v.Batches = append(v.Batches, vb)
		late += f.fold(b, b.Readings, row, nil)
	}
	f.closeAll()
	v.Silver, v.SilverLate, v.Gold = f.silver, f.late, f.gold
	if late == 0 || len(v.Silver) == 0 || len(v.Gold) != 3*len(v.Silver) {
		t.Fatalf("vectors without late readings (%d) or silver (%d)", late, len(v.Silver))
	}
	hasBig := false
	for _, r := range v.SilverLate {
		if r.Boot < 0 || r.Boot > 1<<53 {
			hasBig = true
		}
	}
	if !hasBig {
		t.Error("no late reading with a boot id beyond 2^53: the vectors would not catch a float64 boot")
	}
	// Missing values in every table: silver windows without pressure or
	// humidity and with some of it (mixed), gold rows without, and late
	// readings without.
	var noP, noH, mixed, goldNoP, goldMixed, lateNoP int
	for _, r := range v.Silver {
		if r.PressureAvg == nil {
			noP++
		}
		if r.HumidityAvg == nil {
			noH++
		}
		if r.Device == "pi-kitchen" && r.PressureAvg != nil && r.Count > 1 {
			mixed++
		}
	}
	for _, g := range v.Gold {
		if g.PressurePa == nil {
			goldNoP++
		}
		if g.Device == "pi-garage" && g.HumidityRH != nil && g.Windows > 1 {
			goldMixed++
		}
	}
	for _, r := range v.SilverLate {
		if r.PressurePa == nil {
			lateNoP++
		}
	}
	if noP == 0 || noH == 0 || mixed == 0 || goldNoP == 0 || goldMixed == 0 || lateNoP == 0 {
		t.Errorf("vectors lack missing values: silver without pressure %d, without humidity %d, gold without pressure %d, pi-garage gold over windows with and without humidity %d, late readings without pressure %d",
			noP, noH, goldNoP, goldMixed, lateNoP)
	}
	got, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	const name = "testdata/fold_vectors.json"
	if *updateVectors {
		if err := os.WriteFile(name, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("%v (write it with -update-fold-vectors)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what the Go fold makes now: rerun with -update-fold-vectors and check scripts/databricks still agrees", name)
	}
}
