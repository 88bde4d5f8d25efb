package series

import (
	"math"
	"sort"
	"strconv"

	"github.com/pilake/pilake/collector/schema"
)

// Columns is a columnar time series: T holds unix milliseconds in ascending
// order, and each quantity column has one value per T.
//
// Lo and Hi, when set, are the band: per point, the least and greatest
// reading behind it (silver windows carry their readings' min and max; a
// decimated point the min of its windows' minima and the max of their
// maxima), so a one-second spike stays visible in a day's view. N, when
// set, is the readings behind each point: decimation weighs the means by it.
//
// Humidity and pressure are NaN where the point has none (a BMP280 has no
// humidity, the Azure simulator sends no pressure): JSON null, which the
// page draws as a gap. Temperature is always a number.
type Columns struct {
	T          []int64   `json:"t"`
	TempC      []float64 `json:"temp_c"`
	HumidityRH []float64 `json:"humidity_rh"`
	PressurePa []float64 `json:"pressure_pa"`
	N          []int64   `json:"-"`
	// The band (when TempLo is not nil): temp_c_lo, temp_c_hi, … in JSON.
	TempLo     []float64 `json:"temp_c_lo,omitempty"`
	TempHi     []float64 `json:"temp_c_hi,omitempty"`
	HumidityLo []float64 `json:"humidity_rh_lo,omitempty"`
	HumidityHi []float64 `json:"humidity_rh_hi,omitempty"`
	PressureLo []float64 `json:"pressure_pa_lo,omitempty"`
	PressureHi []float64 `json:"pressure_pa_hi,omitempty"`
}

// HasBand reports whether c carries the band.
func (c *Columns) HasBand() bool { return c.TempLo != nil }

func (c *Columns) makeBand() {
	c.TempLo, c.TempHi = []float64{}, []float64{}
	c.HumidityLo, c.HumidityHi = []float64{}, []float64{}
	c.PressureLo, c.PressureHi = []float64{}, []float64{}
}

// Series is one device's silver windows and gold moving averages.
type Series struct {
	Device string  `json:"device"`
	Silver Columns `json:"silver"`
	Gold   Columns `json:"gold"`
}

// Point is one point of Columns with everything it may carry.
type Point struct {
	T      int64
	V      [3]float64 // temp °C, humidity %RH, pressure Pa
	Lo, Hi [3]float64 // the band; used when Band
	Band   bool
	N      int64 // readings behind the point (0: unknown, weighs 1)
}

// Len returns the number of points.
func (c *Columns) Len() int { return len(c.T) }

// Append adds one point without a band or weight. On Columns that have a
// band, the point's own values are its band.
func (c *Columns) Append(tMS int64, tempC, humRH, pressPa float64) {
	c.AppendPoint(Point{T: tMS, V: [3]float64{tempC, humRH, pressPa}})
}

// AppendPoint adds p. The first point decides whether c has a band and
// weights; later points without them get their values as band and weight 1.
func (c *Columns) AppendPoint(p Point) {
	if len(c.T) == 0 && p.Band && !c.HasBand() {
		c.makeBand()
	}
	if len(c.T) == 0 && p.N > 0 && c.N == nil {
		c.N = []int64{}
	}
	c.T = append(c.T, p.T)
	c.TempC = append(c.TempC, p.V[0])
	c.HumidityRH = append(c.HumidityRH, p.V[1])
	c.PressurePa = append(c.PressurePa, p.V[2])
	if c.HasBand() {
		if !p.Band {
			p.Lo, p.Hi = p.V, p.V
		}
		c.TempLo, c.TempHi = append(c.TempLo, p.Lo[0]), append(c.TempHi, p.Hi[0])
		c.HumidityLo, c.HumidityHi = append(c.HumidityLo, p.Lo[1]), append(c.HumidityHi, p.Hi[1])
		c.PressureLo, c.PressureHi = append(c.PressureLo, p.Lo[2]), append(c.PressureHi, p.Hi[2])
	}
	if c.N != nil {
		c.N = append(c.N, max(p.N, 1))
	}
}

// At returns point i.
func (c *Columns) At(i int) Point {
	p := Point{T: c.T[i], V: [3]float64{c.TempC[i], c.HumidityRH[i], c.PressurePa[i]}}
	if i < len(c.TempLo) && i < len(c.TempHi) && i < len(c.HumidityLo) && i < len(c.HumidityHi) && i < len(c.PressureLo) && i < len(c.PressureHi) {
		p.Band = true
		p.Lo = [3]float64{c.TempLo[i], c.HumidityLo[i], c.PressureLo[i]}
		p.Hi = [3]float64{c.TempHi[i], c.HumidityHi[i], c.PressureHi[i]}
	}
	if i < len(c.N) {
		p.N = c.N[i]
	}
	return p
}

// Empty returns Columns with non-nil, empty columns, so JSON shows [] not null.
func Empty() Columns {
	return Columns{T: []int64{}, TempC: []float64{}, HumidityRH: []float64{}, PressurePa: []float64{}}
}

// Normalize makes nil columns empty (JSON [] instead of null).
func (c *Columns) Normalize() {
	if c.T == nil {
		c.T, c.TempC, c.HumidityRH, c.PressurePa = []int64{}, []float64{}, []float64{}, []float64{}
	}
}

// MS converts microseconds since the epoch to milliseconds (floor).
func MS(us int64) int64 {
	if us < 0 {
		return -((-us + 999) / 1000)
	}
	return us / 1000
}

// SilverPoint is a silver row's point: window start, averages, the band of
// its readings' min and max, and its reading count; a null humidity or
// pressure is NaN. ok is false if a value is not finite.
func SilverPoint(r *schema.SilverRow) (Point, bool) {
	p := Point{T: MS(r.WindowStart), V: [3]float64{r.TempAvg, Opt(r.HumidityAvg), Opt(r.PressureAvg)},
		Lo: [3]float64{r.TempMin, Opt(r.HumidityMin), Opt(r.PressureMin)}, Hi: [3]float64{r.TempMax, Opt(r.HumidityMax), Opt(r.PressureMax)},
		Band: true, N: r.Count}
	ok := FiniteOrMissing(p.V[0], p.V[1], p.V[2], r.HumidityAvg == nil, r.PressureAvg == nil) &&
		FiniteOrMissing(p.Lo[0], p.Lo[1], p.Lo[2], r.HumidityMin == nil, r.PressureMin == nil) &&
		FiniteOrMissing(p.Hi[0], p.Hi[1], p.Hi[2], r.HumidityMax == nil, r.PressureMax == nil)
	return p, ok
}

// Opt is a nullable column's value as Columns holds it: NaN for null.
func Opt(v *float64) float64 {
	if v == nil {
		return math.NaN()
	}
	return *v
}

// FiniteOrMissing reports whether tempC is finite and humRH and pressPa are
// finite or missing (their noHum / noPress set, the value NaN).
func FiniteOrMissing(tempC, humRH, pressPa float64, noHum, noPress bool) bool {
	fin := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	return fin(tempC) && (fin(humRH) || noHum && math.IsNaN(humRH)) && (fin(pressPa) || noPress && math.IsNaN(pressPa))
}

// AppendSilver adds a silver row's window start, averages and band, and
// reports false (adding nothing) if a value is not finite.
func (c *Columns) AppendSilver(r *schema.SilverRow) bool {
	p, ok := SilverPoint(r)
	if ok {
		c.AppendPoint(p)
	}
	return ok
}

// AppendGold adds a gold row's window start and moving averages (a null
// humidity or pressure as NaN), and reports false (adding nothing) if a
// value is not finite.
func (c *Columns) AppendGold(r *schema.GoldRow) bool {
	h, p := Opt(r.HumidityRH), Opt(r.PressurePa)
	if !FiniteOrMissing(r.TempC, h, p, r.HumidityRH == nil, r.PressurePa == nil) {
		return false
	}
	c.Append(MS(r.WindowStart), r.TempC, h, p)
	return true
}

// like returns empty Columns with the same optional columns as c.
func (c *Columns) like() Columns {
	out := Columns{}
	if c.HasBand() {
		out.makeBand()
	}
	if c.N != nil {
		out.N = []int64{}
	}
	return out
}

// Sort orders the points by time, keeping the last of equal times (a later
// provisional value of a window replaces an earlier one).
func (c *Columns) Sort() {
	n := c.Len()
	sorted := true
	for i := 1; i < n && sorted; i++ {
		sorted = c.T[i] > c.T[i-1]
	}
	if sorted {
		return // the common case: files and windows come in order
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return c.T[idx[a]] < c.T[idx[b]] })
	out := c.like()
	for k, i := range idx {
		if k+1 < n && c.T[idx[k+1]] == c.T[i] {
			continue // a later duplicate follows; keep it instead
		}
		out.AppendPoint(c.At(i))
	}
	*c = out
}

// Bucket accumulates the points of one decimation bucket: weighted means,
// mean time, and the band (min of minima, max of maxima). A quantity's
// mean and band are over the points that have it (not NaN); NaN when none
// has.
type Bucket struct {
	n        int
	w        [3]float64
	sumT     float64
	sum      [3]float64
	lo, hi   [3]float64
	band     bool
	readings int64
}

// Add folds p into b.
func (b *Bucket) Add(p Point) {
	w := float64(max(p.N, 1))
	if !p.Band {
		p.Lo, p.Hi = p.V, p.V
	}
	if b.n == 0 {
		b.band = p.Band
	}
	b.band = b.band || p.Band
	b.n++
	b.sumT += float64(p.T)
	b.readings += max(p.N, 1)
	for k := range 3 {
		if math.IsNaN(p.V[k]) {
			continue // the point has none of this quantity
		}
		if b.w[k] == 0 {
			b.lo[k], b.hi[k] = p.Lo[k], p.Hi[k]
		}
		b.w[k] += w
		b.sum[k] += p.V[k] * w
		b.lo[k] = min(b.lo[k], p.Lo[k])
		b.hi[k] = max(b.hi[k], p.Hi[k])
	}
}

// Len returns the points folded in.
func (b *Bucket) Len() int { return b.n }

// Point returns the bucket's point: mean time (rounded), weighted means, band.
func (b *Bucket) Point() Point {
	p := Point{T: int64(math.Round(b.sumT / float64(b.n))), Lo: b.lo, Hi: b.hi, Band: b.band, N: b.readings}
	for k := range 3 {
		if b.w[k] == 0 {
			p.V[k], p.Lo[k], p.Hi[k] = math.NaN(), math.NaN(), math.NaN()
			continue
		}
		p.V[k] = b.sum[k] / b.w[k]
	}
	return p
}

// BucketWidth returns the width in ms of each of maxPoints equal buckets over [fromMS, toMS).
func BucketWidth(fromMS, toMS int64, maxPoints int) int64 {
	if maxPoints <= 0 || toMS <= fromMS {
		return 1
	}
	return max(1, (toMS-fromMS+int64(maxPoints)-1)/int64(maxPoints))
}

// Decimate reduces c to at most about maxPoints points: the points in each
// of maxPoints equal time buckets over [fromMS, toMS) become one point at
// their mean time with their means (weighted by N when c has it) and, when c
// has a band, the least minimum and the greatest maximum of the bucket, so
// extremes survive any zoom level. c must be sorted and hold finite values
// (or NaN for a missing humidity or pressure).
// If c already fits, it is returned unchanged.
func Decimate(c Columns, fromMS, toMS int64, maxPoints int) Columns {
	n := c.Len()
	if maxPoints <= 0 || n <= maxPoints {
		return c
	}
	if toMS <= fromMS || c.T[0] < fromMS || c.T[n-1] >= toMS {
		fromMS, toMS = c.T[0], c.T[n-1]+1
	}
	width := BucketWidth(fromMS, toMS, maxPoints)
	out := c.like()
	for i := 0; i < n; {
		b := (c.T[i] - fromMS) / width
		var acc Bucket
		j := i
		for ; j < n && (c.T[j]-fromMS)/width == b; j++ {
			acc.Add(c.At(j))
		}
		out.AppendPoint(acc.Point())
		i = j
	}
	return out
}

// Finite reports whether all three values are finite numbers (JSON cannot
// carry NaN or ±Inf, and a chart cannot draw them).
func Finite(tempC, humRH, pressPa float64) bool {
	return !math.IsNaN(tempC+humRH+pressPa) && !math.IsInf(tempC+humRH+pressPa, 0)
}

// Decimals are the decimal places AppendJSON keeps of each quantity: finer
// than the BME280 resolves (0.01 °C, ~0.2 Pa, ~0.001 %RH), and far fewer
// bytes than the 17 significant digits of a float64.
const (
	TempDecimals     = 3 // °C
	HumidityDecimals = 3 // %RH
	PressureDecimals = 1 // Pa
)

// AppendJSON appends c as compact JSON (the shape encoding/json gives it,
// values rounded to TempDecimals, HumidityDecimals and PressureDecimals).
func (c *Columns) AppendJSON(b []byte) []byte {
	b = append(b, `{"t":[`...)
	for i, t := range c.T {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, t, 10)
	}
	b = append(b, ']')
	b = appendValues(b, c.TempC, c.HumidityRH, c.PressurePa)
	if c.HasBand() {
		b = appendArray(b, `,"temp_c_lo":[`, c.TempLo, TempDecimals)
		b = appendArray(b, `,"temp_c_hi":[`, c.TempHi, TempDecimals)
		b = appendArray(b, `,"humidity_rh_lo":[`, c.HumidityLo, HumidityDecimals)
		b = appendArray(b, `,"humidity_rh_hi":[`, c.HumidityHi, HumidityDecimals)
		b = appendArray(b, `,"pressure_pa_lo":[`, c.PressureLo, PressureDecimals)
		b = appendArray(b, `,"pressure_pa_hi":[`, c.PressureHi, PressureDecimals)
	}
	return append(b, '}')
}

func appendValues(b []byte, temp, hum, press []float64) []byte {
	b = appendArray(b, `,"temp_c":[`, temp, TempDecimals)
	b = appendArray(b, `,"humidity_rh":[`, hum, HumidityDecimals)
	return appendArray(b, `,"pressure_pa":[`, press, PressureDecimals)
}

func appendArray(b []byte, key string, v []float64, decimals int) []byte {
	b = append(b, key...)
	for i, f := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendFloat(b, f, decimals)
	}
	return append(b, ']')
}

// AppendFloat appends f rounded to decimals places as a JSON number, without
// trailing zeros, or null for NaN (a missing humidity or pressure: the
// chart's gap) and ±Inf (which Columns never hold).
func AppendFloat(b []byte, f float64, decimals int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	if math.Abs(f) >= 1e15 {
		return strconv.AppendFloat(b, f, 'g', -1, 64)
	}
	if b, ok := appendFixed(b, f, decimals); ok {
		return b
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

// pow10 are the scales appendFixed handles.
var pow10 = [...]float64{1, 10, 100, 1000, 10000, 100000, 1000000}

// appendFixed is AppendFloat's fast path (the history answer of 100 cards
// holds a million numbers): f scaled by 10^decimals and rounded to an
// integer, whose digits are written with the decimal point put back and
// trailing zeros dropped. It gives up (false) where that could round
// otherwise than strconv's exact 'f' formatting: a scaled value near a half
// (the scaling rounds by up to an ulp), or too large to be exact.
func appendFixed(b []byte, f float64, decimals int) ([]byte, bool) {
	if decimals < 0 || decimals >= len(pow10) {
		return b, false
	}
	x := f * pow10[decimals]
	if !(x > -1e12 && x < 1e12) {
		return b, false
	}
	r := math.Round(x)
	if d := math.Abs(x - r); d > 0.499 { // near a half: let strconv decide
		return b, false
	}
	n := int64(r)
	if n == 0 {
		return append(b, '0'), true
	}
	if n < 0 {
		b = append(b, '-')
		n = -n
	}
	// Drop trailing zeros of the fraction.
	for decimals > 0 && n%10 == 0 {
		n /= 10
		decimals--
	}
	scale := int64(pow10[decimals])
	b = strconv.AppendInt(b, n/scale, 10)
	if decimals == 0 {
		return b, true
	}
	b = append(b, '.')
	frac := n % scale
	for p := scale / 10; p > frac; p /= 10 { // leading zeros of the fraction
		b = append(b, '0')
	}
	return strconv.AppendInt(b, frac, 10), true
}

// MarshalJSON encodes c as AppendJSON does: the live feed's updates are
// marshalled once per update and written to every browser, so their size
// is the live path's cost per client.
func (c Columns) MarshalJSON() ([]byte, error) { return c.AppendJSON(nil), nil }
