package stages

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/schema"
)

const sec = int64(1_000_000)

// genInput makes per-device batches of 1 s (at 100 Hz here, to keep it fast)
// starting at a non-aligned time.
func genInput(rng *rand.Rand, devices, batches int) []*wire.Batch {
	var out []*wire.Batch
	for d := range devices {
		ts := int64(1_767_225_600)*sec + rng.Int64N(sec)
		for s := 1; s <= batches; s++ {
			b := &wire.Batch{DeviceID: fmt.Sprintf("d%d", d), BootID: 1, Seq: uint64(s)}
			for range 100 {
				b.Readings = append(b.Readings, wire.Reading{TimeUS: ts, Temp: 1000 + rng.Int32N(3000), Press: 90000*256 + rng.Uint32N(1<<20),
					Hum: rng.Uint32N(100 * 1024), Fresh: rng.IntN(3) == 0})
				ts += 10_000 + rng.Int64N(50) // jitter
			}
			switch rng.IntN(16) { // some batches without pressure (the simulator's) or humidity (a BMP280's)
			case 0:
				b.Flags |= wire.FlagNoPressure
			case 1:
				b.Flags |= wire.FlagNoHumidity
			case 2:
				b.Flags |= wire.FlagNoPressure | wire.FlagNoHumidity
			}
			for i := range b.Readings {
				if b.Flags&wire.FlagNoPressure != 0 {
					b.Readings[i].Press = 0
				}
				if b.Flags&wire.FlagNoHumidity != 0 {
					b.Readings[i].Hum = 0
				}
			}
			out = append(out, b)
			if rng.IntN(10) == 0 {
				ts += rng.Int64N(3 * sec) // a gap: empty windows
			}
		}
	}
	return out
}

// boundedShuffle permutes batches so that, per device, no batch arrives after
// one whose capture started more than maxAhead µs after its own; devices
// interleave freely.
func boundedShuffle(rng *rand.Rand, in []*wire.Batch, maxAhead int64) []*wire.Batch {
	byDev := map[string][]*wire.Batch{}
	var devs []string
	for _, b := range in {
		if byDev[b.DeviceID] == nil {
			devs = append(devs, b.DeviceID)
		}
		byDev[b.DeviceID] = append(byDev[b.DeviceID], b)
	}
	for _, d := range devs {
		q := byDev[d]
		// Sort by key = start time + random offset in [0, maxAhead]: a batch
		// can only be overtaken by batches starting less than maxAhead after it.
		keys := make([]int64, len(q))
		idx := make([]int, len(q))
		for i := range q {
			keys[i] = q[i].Readings[0].TimeUS + rng.Int64N(maxAhead)
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int {
			switch {
			case keys[a] < keys[b]:
				return -1
			case keys[a] > keys[b]:
				return 1
			}
			return 0
		})
		out := make([]*wire.Batch, len(q))
		for i, j := range idx {
			out[i] = q[j]
		}
		byDev[d] = out
	}
	var res []*wire.Batch
	for len(res) < len(in) {
		d := devs[rng.IntN(len(devs))]
		if len(byDev[d]) == 0 {
			continue
		}
		res = append(res, byDev[d][0])
		byDev[d] = byDev[d][1:]
	}
	return res
}

func runFold(order []*wire.Batch, live bool) *folder {
	f := newFolder(sec, 10*sec, []int{8, 15, 60})
	var lu *schema.LiveUpdate
	if live {
		lu = &schema.LiveUpdate{}
	}
	for _, b := range order {
		f.fold(b, b.Readings, schema.BronzeRow{Device: b.DeviceID}, lu)
	}
	f.closeAll()
	return f
}

func sortedSilver(r []schema.SilverRow) []schema.SilverRow {
	r = slices.Clone(r)
	slices.SortFunc(r, func(a, b schema.SilverRow) int {
		if c := strings.Compare(a.Device, b.Device); c != 0 {
			return c
		}
		return int(a.WindowStart - b.WindowStart)
	})
	return r
}

func sortedGold(r []schema.GoldRow) []schema.GoldRow {
	r = slices.Clone(r)
	slices.SortFunc(r, func(a, b schema.GoldRow) int {
		if c := strings.Compare(a.Device, b.Device); c != 0 {
			return c
		}
		if a.WindowStart != b.WindowStart {
			return int(a.WindowStart - b.WindowStart)
		}
		return int(a.N - b.N)
	})
	return r
}

// Property: the same input in any arrival order whose disorder stays within
// the allowed lateness gives the same final silver and gold, and no late rows.
func TestPropertyOrderIndependentSilver(t *testing.T) {
	for seed := range uint64(60) {
		rng := rand.New(rand.NewPCG(seed, 99))
		in := genInput(rng, 1+rng.IntN(4), 20+rng.IntN(60))
		ref := runFold(in, false)
		if len(ref.late) != 0 {
			t.Fatalf("seed %d: in-order input has %d late readings", seed, len(ref.late))
		}
		want, wantGold := sortedSilver(ref.silver), sortedGold(ref.gold)
		for k := range 3 {
			// Batches span ~1 s: starts at most 8 s apart keep the disorder
			// within the 10 s allowed lateness.
			order := boundedShuffle(rng, in, 8*sec)
			got := runFold(order, k == 0)
			if len(got.late) != 0 {
				t.Fatalf("seed %d/%d: %d late readings", seed, k, len(got.late))
			}
			if g := sortedSilver(got.silver); !reflect.DeepEqual(g, want) {
				t.Fatalf("seed %d/%d: silver differs:\n%v\nwant\n%v", seed, k, g, want)
			}
			if g := sortedGold(got.gold); !reflect.DeepEqual(g, wantGold) {
				t.Fatalf("seed %d/%d: gold differs", seed, k)
			}
		}
	}
}

// Property: in ANY arrival order, every reading is either in exactly one final
// silver window or in silver_late, and each silver row is exactly the
// aggregate of its window's readings that were not late.
func TestPropertyNothingLostAnyOrder(t *testing.T) {
	withLate := 0
	defer func() {
		if withLate == 0 {
			t.Fatal("no shuffled input produced late readings: the property was not exercised")
		}
	}()
	for seed := range uint64(60) {
		rng := rand.New(rand.NewPCG(seed, 7))
		in := genInput(rng, 1+rng.IntN(3), 10+rng.IntN(40))
		order := slices.Clone(in)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		f := runFold(order, false)
		if len(f.late) > 0 {
			withLate++
		}
		total := 0
		for _, b := range in {
			total += len(b.Readings)
		}
		type key struct {
			dev string
			ws  int64
		}
		late := map[key]map[int64]int{}
		for _, r := range f.late {
			k := key{r.Device, r.WindowStart}
			if late[k] == nil {
				late[k] = map[int64]int{}
			}
			late[k][r.TS]++
			if r.WindowStart+sec > r.Watermark {
				t.Fatalf("seed %d: late row for window %d not before watermark %d", seed, r.WindowStart, r.Watermark)
			}
		}
		// Expected aggregates from the raw readings minus the late ones.
		exp := map[key]*window{}
		for _, b := range in {
			for i := range b.Readings {
				r := &b.Readings[i]
				k := key{b.DeviceID, floorDiv(r.TimeUS, sec) * sec}
				if m := late[k]; m[r.TimeUS] > 0 {
					m[r.TimeUS]--
					continue
				}
				w := exp[k]
				if w == nil {
					w = &window{Start: k.ws}
					exp[k] = w
				}
				w.add(r, b.Flags&wire.FlagNoPressure == 0, b.Flags&wire.FlagNoHumidity == 0)
			}
		}
		var sum int64
		seen := map[key]bool{}
		for _, s := range f.silver {
			k := key{s.Device, s.WindowStart}
			if seen[k] {
				t.Fatalf("seed %d: window %v final twice", seed, k)
			}
			seen[k] = true
			w := exp[k]
			if w == nil || !reflect.DeepEqual(w.row(s.Device, sec), s) {
				t.Fatalf("seed %d: silver %+v, want %+v", seed, s, w)
			}
			sum += s.Count
		}
		if int(sum)+len(f.late) != total || len(seen) != len(exp) {
			t.Fatalf("seed %d: %d in silver + %d late != %d readings", seed, sum, len(f.late), total)
		}
	}
}

func TestLateAfterWatermark(t *testing.T) {
	f := newFolder(sec, 2*sec, []int{2})
	mk := func(seq uint64, ts ...int64) *wire.Batch {
		b := &wire.Batch{DeviceID: "a", BootID: 1, Seq: seq}
		for _, x := range ts {
			b.Readings = append(b.Readings, wire.Reading{TimeUS: x, Temp: 2000, Press: 100000 * 256, Hum: 1024})
		}
		return b
	}
	lu := &schema.LiveUpdate{}
	f.fold(mk(1, 0, sec/2), mk(1, 0, sec/2).Readings, schema.BronzeRow{}, lu)
	if len(f.silver) != 0 || len(lu.Silver) != 1 || lu.Silver[0].Final || lu.Silver[0].Count != 2 {
		t.Fatalf("after first batch: silver %v live %+v", f.silver, lu.Silver)
	}
	// Device "b" far ahead must not make "a" late (per-device watermarks).
	other := &wire.Batch{DeviceID: "b", BootID: 1, Seq: 1, Readings: []wire.Reading{{TimeUS: 100 * sec, Temp: 1, Press: 100000 * 256}}}
	f.fold(other, other.Readings, schema.BronzeRow{}, nil)
	b2 := mk(2, 3*sec+1) // watermark of a becomes 1 s+1: window [0,1s) final
	f.fold(b2, b2.Readings, schema.BronzeRow{}, lu)
	if len(f.silver) != 1 || f.silver[0].Device != "a" || f.silver[0].Count != 2 {
		t.Fatalf("silver %+v", f.silver)
	}
	if len(lu.Silver) != 2 || !lu.Silver[0].Final || lu.Silver[1].Final {
		t.Fatalf("live %+v", lu.Silver)
	}
	b3 := mk(3, sec/4, sec+5) // the first is late, the second is not
	f.fold(b3, b3.Readings, schema.BronzeRow{Device: "a"}, nil)
	if len(f.late) != 1 || f.late[0].TS != sec/4 || f.late[0].WindowStart != 0 || f.late[0].Watermark != sec+1 {
		t.Fatalf("late %+v", f.late)
	}
	f.closeAll()
	// a: [0,1s) 2 readings, [1s,2s) 1, [3s,4s) 1; b: [100s,101s) 1
	var n int64
	for _, s := range f.silver {
		n += s.Count
	}
	if n != 5 || len(f.silver) != 4 {
		t.Fatalf("silver %+v", f.silver)
	}
	// After closeAll, anything for those windows is late.
	b4 := mk(4, 3*sec+2)
	if f.fold(b4, b4.Readings, schema.BronzeRow{}, nil) != 1 {
		t.Fatal("reading for a window closed at shutdown not late")
	}
	// Gold with N=2 over a's windows 0, 1s, 3s.
	var g []schema.GoldRow
	for _, r := range f.gold {
		if r.Device == "a" {
			g = append(g, r)
		}
	}
	if len(g) != 3 || g[0].Windows != 1 || g[1].Windows != 2 || g[2].Windows != 2 || g[2].WindowStart != 3*sec {
		t.Fatalf("gold %+v", g)
	}
}

func TestDevicesCodecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	f := runFold(genInput(rng, 4, 30), false)
	// Open windows too: fold more without closing.
	for _, b := range genInput(rng, 3, 5) {
		f.fold(b, b.Readings, schema.BronzeRow{}, nil)
	}
	data := appendDevices(nil, f.devices)
	got, err := decodeDevices(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(f.devices) {
		t.Fatalf("%d devices, want %d", len(got), len(f.devices))
	}
	for id, d := range f.devices {
		g := got[id]
		if g == nil || g.MaxEvent != d.MaxEvent || g.ClosedBefore != d.ClosedBefore || !slices.Equal(g.Open, d.Open) || !sameHist(g.Hist, d.Hist) {
			t.Fatalf("device %s: %+v, want %+v", id, g, d)
		}
	}
	for i := range len(data) - 1 {
		if _, err := decodeDevices(data[:i]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", i)
		}
	}
}

func FuzzDecodeDevices(f *testing.F) {
	rng := rand.New(rand.NewPCG(2, 2))
	ff := runFold(genInput(rng, 2, 12), false)
	for _, b := range genInput(rng, 2, 3) {
		ff.fold(b, b.Readings, schema.BronzeRow{}, nil)
	}
	f.Add(appendDevices(nil, ff.devices))
	f.Add([]byte("PLSD1\x01\x01a\x00\x00\x00\x00"))
	f.Add([]byte("PLSD1\xff\xff\xff\xff\x0f"))
	f.Add([]byte("PLSD2\x01\x01a\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		devs, err := decodeDevices(data)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		again, err := decodeDevices(appendDevices(nil, devs))
		if err != nil || len(again) != len(devs) {
			t.Fatalf("re-decoding: %v", err)
		}
	})
}

// sameHist compares gold histories bit for bit (NaN: no value).
func sameHist(a, b []hist) bool {
	return slices.EqualFunc(a, b, func(x, y hist) bool {
		return x.Start == y.Start && x.T == y.T && math.Float64bits(x.P) == math.Float64bits(y.P) && math.Float64bits(x.H) == math.Float64bits(y.H)
	})
}

// TestDevicesGolden pins the binary state format (PLSD2): a state written by
// an older build must load in a newer one. PILAKE_UPDATE_GOLDEN=1 rewrites
// the PLSD2 file; the PLSD1 one (written before nullable pressure and
// humidity) must still load, every reading having had both.
func TestDevicesGolden(t *testing.T) {
	mk := func(pn, hn int64, p, h float64) map[string]*device {
		return map[string]*device{"dev-1": {
			MaxEvent: 1_767_225_612_345_678, ClosedBefore: 1_767_225_602_000_000,
			Open: []window{{Start: 1_767_225_602_000_000, N: 400, Fresh: 100, TSum: 800000, TMin: 1990, TMax: 2010,
				PMiss: 400 - pn, PSum: pn * 101325 * 256, PMin: 101300 * 256, PMax: 101350 * 256, HMiss: 400 - hn, HSum: hn * 40 * 1024, HMin: 39 * 1024, HMax: 41 * 1024}},
			Hist: []hist{{Start: 1_767_225_600_000_000, T: 20.01, P: p, H: h}, {Start: 1_767_225_601_000_000, T: 20.02, P: 101325.75, H: 40.5}},
		}}
	}
	same := func(a, b *device) bool {
		return a != nil && b != nil && a.MaxEvent == b.MaxEvent && slices.Equal(a.Open, b.Open) && sameHist(a.Hist, b.Hist)
	}
	t.Run("v2", func(t *testing.T) {
		devs := mk(300, 0, math.NaN(), 40.25) // a window with 100 readings without pressure, none with humidity
		got := appendDevices(nil, devs)
		const golden = "testdata/devices-v2.bin"
		if os.Getenv("PILAKE_UPDATE_GOLDEN") == "1" {
			if err := os.WriteFile(golden, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("encoding changed:\n got %x\nwant %x", got, want)
		}
		back, err := decodeDevices(want)
		if err != nil {
			t.Fatal(err)
		}
		if !same(back["dev-1"], devs["dev-1"]) {
			t.Fatalf("decoded %+v", back["dev-1"])
		}
		if r := back["dev-1"].Open[0].row("dev-1", 1e6); r.PressureAvg == nil || *r.PressureAvg != 101325 || r.HumidityAvg != nil || r.Count != 400 {
			t.Fatalf("row of the decoded window: %+v", r)
		}
	})
	t.Run("v1", func(t *testing.T) {
		want, err := os.ReadFile("testdata/devices-v1.bin")
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeDevices(want)
		if err != nil {
			t.Fatal(err)
		}
		if !same(back["dev-1"], mk(400, 400, 101325.5, 40.25)["dev-1"]) {
			t.Fatalf("decoded %+v", back["dev-1"])
		}
	})
}
