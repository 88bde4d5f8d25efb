package schema_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/pilake/pilake/collector/schema"
)

// randFloat returns a finite float64 from every region encoding/json
// formats differently: zero, tiny (exponent form), ordinary, huge
// (exponent form from 1e21), integral, negative, and random bit patterns.
// randOpt is a nullable column's value: nil (null) or randFloat's.
func randOpt(r *rand.Rand) *float64 {
	if r.IntN(4) == 0 {
		return nil
	}
	return schema.Float(randFloat(r))
}

func randFloat(r *rand.Rand) float64 {
	switch r.IntN(9) {
	case 0:
		return 0
	case 1:
		return math.Copysign(0, -1)
	case 2:
		return (r.Float64() - 0.5) * 1e-6 * math.Pow(10, -float64(r.IntN(300)))
	case 3:
		return (r.Float64() - 0.5) * 1e21 * math.Pow(10, float64(r.IntN(280)))
	case 4:
		return float64(r.IntN(2_000_000) - 1_000_000)
	case 5:
		return 1e21
	case 6:
		return 1e-6
	case 7:
		for {
			if f := math.Float64frombits(r.Uint64()); !math.IsNaN(f) && !math.IsInf(f, 0) {
				return f
			}
		}
	}
	return (r.Float64() - 0.5) * 200_000
}

var devices = []string{"", "pi-0001", "dev_x.y-Z", `q"uote\back`, "<b>&amp;</b>", "ünïcödé", "tab\tnl\n", "\u2028\u2029", "bad\xffutf8"}

func randUpdate(r *rand.Rand) schema.LiveUpdate {
	i64 := func() int64 {
		if r.IntN(4) == 0 {
			return int64(r.Uint64())
		}
		return r.Int64N(1 << 52)
	}
	u := schema.LiveUpdate{
		Device:          devices[r.IntN(len(devices))],
		NewestCaptureUS: i64(),
		PublishedUS:     i64(),
		WatermarkUS:     i64(),
	}
	switch r.IntN(3) { // nil, empty and filled slices encode differently
	case 1:
		u.Silver = []schema.LiveSilver{}
	case 2:
		for range 1 + r.IntN(4) {
			u.Silver = append(u.Silver, schema.LiveSilver{SilverRow: schema.SilverRow{
				Device: devices[r.IntN(len(devices))], WindowStart: i64(), WindowEnd: i64(), Count: i64(), FreshCount: i64(),
				TempAvg: randFloat(r), TempMin: randFloat(r), TempMax: randFloat(r),
				PressureAvg: randOpt(r), PressureMin: randOpt(r), PressureMax: randOpt(r),
				HumidityAvg: randOpt(r), HumidityMin: randOpt(r), HumidityMax: randOpt(r),
			}, Final: r.IntN(2) == 0})
		}
	}
	switch r.IntN(3) {
	case 1:
		u.Gold = []schema.GoldRow{}
	case 2:
		for range 1 + r.IntN(6) {
			u.Gold = append(u.Gold, schema.GoldRow{
				Device: devices[r.IntN(len(devices))], WindowStart: i64(), N: int32(r.Uint32()), Windows: int32(r.Uint32()),
				TempC: randFloat(r), PressurePa: randOpt(r), HumidityRH: randOpt(r),
			})
		}
	}
	return u
}

// checkSame fails unless AppendJSON produces what encoding/json does: the
// same bytes, and so the same value for every decoder (checked too, into
// the struct and into a generic map, in case the bytes ever differ on purpose).
func checkSame(t *testing.T, u schema.LiveUpdate) {
	t.Helper()
	want, err := json.Marshal(u)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	prefix := []byte("prefix")
	got, err := u.AppendJSON(prefix)
	if err != nil {
		t.Fatalf("AppendJSON(%+v): %v", u, err)
	}
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatalf("AppendJSON lost the buffer's contents: %q", got)
	}
	got = got[len(prefix):]
	var gs, ws schema.LiveUpdate
	if err := json.Unmarshal(got, &gs); err != nil {
		t.Fatalf("AppendJSON produced invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal(want, &ws); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gs, ws) {
		t.Errorf("decoded differently:\n got %+v\nwant %+v", gs, ws)
	}
	var gm, wm map[string]any
	if err := json.Unmarshal(got, &gm); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(want, &wm); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gm, wm) {
		t.Errorf("decoded into maps differently:\n got %v\nwant %v", gm, wm)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	t.Run("zero", func(t *testing.T) { checkSame(t, schema.LiveUpdate{}) })
	t.Run("empty slices", func(t *testing.T) {
		checkSame(t, schema.LiveUpdate{Device: "pi-1", Silver: []schema.LiveSilver{}, Gold: []schema.GoldRow{}})
	})
	t.Run("typical", func(t *testing.T) {
		checkSame(t, schema.LiveUpdate{Device: "pi-0042", NewestCaptureUS: 1764030000123456, PublishedUS: 1764030000200000,
			WatermarkUS: 1764029999000000,
			Silver: []schema.LiveSilver{{SilverRow: schema.SilverRow{Device: "pi-0042", WindowStart: 1764029999000000,
				WindowEnd: 1764030000000000, Count: 400, FreshCount: 399, TempAvg: 21.53125, TempMin: 21.5, TempMax: 21.5625,
				PressureAvg: schema.Float(101325.17), PressureMin: schema.Float(101324.9), PressureMax: schema.Float(101325.5), HumidityAvg: schema.Float(45.123),
				HumidityMin: schema.Float(44.9), HumidityMax: schema.Float(45.6)}, Final: true}},
			Gold: []schema.GoldRow{{Device: "pi-0042", WindowStart: 1764029999000000, N: 8, Windows: 3,
				TempC: 21.5, PressurePa: schema.Float(101325), HumidityRH: schema.Float(45)}}})
	})
	r := rand.New(rand.NewPCG(1, 2))
	for range 20_000 {
		u := randUpdate(r)
		checkSame(t, u)
		if t.Failed() {
			break
		}
	}
}

func TestAppendJSONRefusesNonFinite(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		for _, u := range []schema.LiveUpdate{
			{Silver: []schema.LiveSilver{{SilverRow: schema.SilverRow{HumidityMax: schema.Float(f)}}}},
			{Gold: []schema.GoldRow{{}, {TempC: f}}},
		} {
			if _, err := json.Marshal(u); err == nil {
				t.Fatalf("json.Marshal accepted %v", f)
			}
			b, err := u.AppendJSON([]byte("keep"))
			if !errors.Is(err, schema.ErrNonFinite) {
				t.Errorf("AppendJSON with %v: err %v, want ErrNonFinite", f, err)
			}
			if string(b) != "keep" {
				t.Errorf("AppendJSON with %v left %q in the buffer, want %q", f, b, "keep")
			}
		}
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("pi-1", int64(1), 21.5, 101325.0, 1e-7, int32(8))
	f.Add("<&>\xff", int64(-1), 0.0, 1e21, -123456789.123, int32(-1))
	f.Fuzz(func(t *testing.T, dev string, ts int64, a, b, c float64, n int32) {
		u := schema.LiveUpdate{Device: dev, NewestCaptureUS: ts, PublishedUS: -ts, WatermarkUS: ts / 3,
			Silver: []schema.LiveSilver{{SilverRow: schema.SilverRow{Device: dev, WindowStart: ts, TempAvg: a, TempMin: b,
				TempMax: c, PressureAvg: schema.Float(a * b), HumidityMax: schema.Float(c / 7)}, Final: n%2 == 0}},
			Gold: []schema.GoldRow{{Device: dev, N: n, Windows: -n, TempC: a, PressurePa: schema.Float(b), HumidityRH: schema.Float(c)}}}
		if _, err := json.Marshal(u); err != nil {
			if _, aerr := u.AppendJSON(nil); aerr == nil {
				t.Fatalf("json.Marshal failed (%v) but AppendJSON did not", err)
			}
			return
		}
		checkSame(t, u)
	})
}

func BenchmarkLiveUpdateJSON(b *testing.B) {
	u := randUpdate(rand.New(rand.NewPCG(3, 4)))
	u.Device = "pi-0042"
	u.Silver = make([]schema.LiveSilver, 2)
	u.Gold = make([]schema.GoldRow, 6)
	for i := range u.Silver {
		u.Silver[i].SilverRow = schema.SilverRow{Device: "pi-0042", WindowStart: 1764029999000000, WindowEnd: 1764030000000000,
			Count: 400, FreshCount: 399, TempAvg: 21.53125, TempMin: 21.5, TempMax: 21.5625, PressureAvg: schema.Float(101325.17),
			PressureMin: schema.Float(101324.9), PressureMax: schema.Float(101325.5), HumidityAvg: schema.Float(45.123), HumidityMin: schema.Float(44.9), HumidityMax: schema.Float(45.6)}
	}
	for i := range u.Gold {
		u.Gold[i] = schema.GoldRow{Device: "pi-0042", WindowStart: 1764029999000000, N: 8, Windows: 8,
			TempC: 21.52345, PressurePa: schema.Float(101325.0625), HumidityRH: schema.Float(45.0123)}
	}
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(u); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			var err error
			if buf, err = u.AppendJSON(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
