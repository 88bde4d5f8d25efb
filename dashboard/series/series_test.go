package series

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"

	"github.com/pilake/pilake/collector/schema"
)

func cols(ts ...int64) Columns {
	var c Columns
	for _, t := range ts {
		c.Append(t, float64(t), float64(t)*2, float64(t)*3)
	}
	return c
}

func TestSort(t *testing.T) {
	c := Columns{}
	c.Append(3, 3, 0, 0)
	c.Append(1, 1, 0, 0)
	c.Append(3, 33, 0, 0) // a later provisional value of window 3
	c.Append(2, 2, 0, 0)
	c.Sort()
	if !reflect.DeepEqual(c.T, []int64{1, 2, 3}) || !reflect.DeepEqual(c.TempC, []float64{1, 2, 33}) {
		t.Errorf("sorted %+v", c)
	}
}

func TestDecimate(t *testing.T) {
	ramp := func(n int) Columns {
		var ts []int64
		for i := 0; i < n; i++ {
			ts = append(ts, int64(i)*1000)
		}
		return cols(ts...)
	}
	tests := []struct {
		name      string
		in        Columns
		from, to  int64
		max       int
		wantT     []int64
		wantTempC []float64
	}{
		{"fits: unchanged", cols(1, 2, 3), 0, 10, 5, []int64{1, 2, 3}, []float64{1, 2, 3}},
		{"no limit", cols(1, 2, 3), 0, 10, 0, []int64{1, 2, 3}, []float64{1, 2, 3}},
		{"pairs", cols(0, 1, 2, 3), 0, 4, 2, []int64{1, 3}, []float64{0.5, 2.5}}, // mean time rounds half away from zero
		{"uneven", cols(0, 1, 2, 9), 0, 10, 2, []int64{1, 9}, []float64{1, 9}},
		{"range smaller than data: falls back to data span", cols(0, 5, 10, 15), 5, 10, 2, []int64{3, 13}, []float64{2.5, 12.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Decimate(tc.in, tc.from, tc.to, tc.max)
			if !reflect.DeepEqual(got.T, tc.wantT) || !reflect.DeepEqual(got.TempC, tc.wantTempC) {
				t.Errorf("got T=%v temp=%v, want T=%v temp=%v", got.T, got.TempC, tc.wantT, tc.wantTempC)
			}
		})
	}
	t.Run("24h of 1s windows", func(t *testing.T) {
		in := ramp(86400)
		got := Decimate(in, 0, 86400*1000, 1500)
		if got.Len() > 1500 || got.Len() < 1400 {
			t.Errorf("%d points, want ≤ 1500", got.Len())
		}
		var sum float64
		for _, v := range got.TempC {
			sum += v
		}
		if mean := sum / float64(got.Len()); math.Abs(mean-86399*1000/2.0) > 1000 {
			t.Errorf("mean %v drifted", mean)
		}
	})
}

func TestAppendRejectsNonFinite(t *testing.T) {
	var c Columns
	if c.AppendSilver(&schema.SilverRow{TempAvg: math.NaN()}) || c.AppendGold(&schema.GoldRow{PressurePa: schema.Float(math.Inf(1))}) || c.Len() != 0 {
		t.Error("non-finite value appended")
	}
	if !c.AppendSilver(&schema.SilverRow{WindowStart: 1_500_000, TempAvg: 1}) || c.T[0] != 1500 {
		t.Errorf("finite row: %+v", c)
	}
	e := Empty()
	b, _ := json.Marshal(e)
	if string(b) != `{"t":[],"temp_c":[],"humidity_rh":[],"pressure_pa":[]}` {
		t.Errorf("empty columns JSON %s", b)
	}
}

func TestMS(t *testing.T) {
	for us, ms := range map[int64]int64{0: 0, 999: 0, 1000: 1, 1999: 1, -1: -1, -1000: -1, -1001: -2} {
		if MS(us) != ms {
			t.Errorf("MS(%d) = %d, want %d", us, MS(us), ms)
		}
	}
}

// TestDecimateKeepsSpike: one window with a spike in a day of quiet ones
// survives decimation to any width, in the band and (diluted) in the mean.
func TestDecimateKeepsSpike(t *testing.T) {
	const n = 86400
	spikeAt := int64(51_234)
	var c Columns
	for i := int64(0); i < n; i++ {
		r := schema.SilverRow{WindowStart: i * 1e6, Count: 400, TempAvg: 21, TempMin: 20.9, TempMax: 21.1,
			HumidityAvg: schema.Float(40), HumidityMin: schema.Float(39), HumidityMax: schema.Float(41), PressureAvg: schema.Float(101000), PressureMin: schema.Float(100990), PressureMax: schema.Float(101010)}
		if i == spikeAt {
			r.TempAvg, r.TempMax = 30, 45
		}
		c.AppendSilver(&r)
	}
	for _, points := range []int{60, 300, 1500, 4000} {
		d := Decimate(c, 0, n*1000, points)
		if d.Len() > points || !d.HasBand() || len(d.TempHi) != d.Len() {
			t.Fatalf("%d points: got %d, band %v", points, d.Len(), d.HasBand())
		}
		hi, mean := 0.0, 0.0
		for i := range d.T {
			hi = math.Max(hi, d.TempHi[i])
			mean = math.Max(mean, d.TempC[i])
			if d.TempLo[i] != 20.9 || d.HumidityLo[i] != 39 || d.PressureHi[i] != 101010 {
				t.Fatalf("%d points: band at %d: %v %v %v", points, i, d.TempLo[i], d.HumidityLo[i], d.PressureHi[i])
			}
		}
		if hi != 45 || mean <= 21 {
			t.Errorf("%d points: band max %v (want 45), mean max %v (want > 21)", points, hi, mean)
		}
	}
}

func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	var c Columns
	r := schema.SilverRow{WindowStart: 1_790_000_000_123_456, Count: 3, TempAvg: 21.123456789, TempMin: -0.000012345678, TempMax: 1e22,
		HumidityAvg: schema.Float(40), HumidityMin: schema.Float(39.5), HumidityMax: schema.Float(41), PressureAvg: schema.Float(101325.123456), PressureMin: schema.Float(100990), PressureMax: schema.Float(101010)}
	c.AppendSilver(&r)
	c.Append(1_790_000_001_000, 22, 41, 101000)
	var got, want map[string][]float64
	if err := json.Unmarshal(c.AppendJSON(nil), &got); err != nil {
		t.Fatalf("%s: %v", c.AppendJSON(nil), err)
	}
	b, _ := json.Marshal(c)
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(got) != 10 || len(got) != len(want) {
		t.Fatalf("keys %v vs %v", got, want)
	}
	for k, w := range want {
		for i := range w {
			if math.Abs(got[k][i]-w[i]) > 0.05+1e-15*math.Abs(w[i]) { // 0.1 Pa, 0.001 °C and %RH, or 16 digits
				t.Errorf("%s[%d] = %v, want %v", k, i, got[k][i], w[i])
			}
		}
	}
}

// appendFloatSlow is AppendFloat without its fast path: strconv's exact
// 'f' formatting, trailing zeros dropped.
func appendFloatSlow(b []byte, f float64, decimals int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	if math.Abs(f) >= 1e15 {
		return strconv.AppendFloat(b, f, 'g', -1, 64)
	}
	start := len(b)
	b = strconv.AppendFloat(b, f, 'f', decimals, 64)
	if decimals > 0 {
		for b[len(b)-1] == '0' {
			b = b[:len(b)-1]
		}
		if b[len(b)-1] == '.' {
			b = b[:len(b)-1]
		}
	}
	if string(b[start:]) == "-0" {
		b = append(b[:start], '0')
	}
	return b
}

// TestAppendFloatFastPath: the integer fast path writes exactly what
// strconv's formatting writes, for sensor-like values, halves, tiny and
// huge values, and random bit patterns.
func TestAppendFloatFastPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	vals := []float64{0, -0.0, 1, -1, 0.5, -0.5, 1.0005, 21.4995, 21.5005, 0.0005, -0.0005, 0.0004999, 101325.05,
		101325.25, 99999.95, 1e11, 1e12, -1e12, 1e14, 1e15, 123456789.0125, 0.001, 0.0099999, 2.675, 1.005, math.MaxInt64,
		math.SmallestNonzeroFloat64, math.Inf(1), math.NaN()}
	for range 200000 {
		switch rng.IntN(4) {
		case 0:
			vals = append(vals, 15+rng.Float64()*20) // °C
		case 1:
			vals = append(vals, 90000+rng.Float64()*20000) // Pa
		case 2:
			vals = append(vals, float64(rng.IntN(2000000)-1000000)/1000+float64(rng.IntN(3)-1)*0.0005) // on and near halves
		default:
			vals = append(vals, math.Float64frombits(rng.Uint64()))
		}
	}
	for _, f := range vals {
		for _, d := range []int{0, 1, 3, 6} {
			got, want := string(AppendFloat(nil, f, d)), string(appendFloatSlow(nil, f, d))
			if got != want {
				t.Fatalf("AppendFloat(%v, %d) = %s, want %s", f, d, got, want)
			}
		}
	}
}
