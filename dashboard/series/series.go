package series

import (
	"math"
	"sort"

	"github.com/pilake/pilake/collector/schema"
)

// Columns is a columnar time series: T holds unix milliseconds in ascending
// order, and each quantity column has one value per T.
type Columns struct {
	T          []int64   `json:"t"`
	TempC      []float64 `json:"temp_c"`
	HumidityRH []float64 `json:"humidity_rh"`
	PressurePa []float64 `json:"pressure_pa"`
}

// Series is one device's silver windows and gold moving averages.
type Series struct {
	Device string  `json:"device"`
	Silver Columns `json:"silver"`
	Gold   Columns `json:"gold"`
}

// Len returns the number of points.
func (c *Columns) Len() int { return len(c.T) }

// Append adds one point.
func (c *Columns) Append(tMS int64, tempC, humRH, pressPa float64) {
	c.T = append(c.T, tMS)
	c.TempC = append(c.TempC, tempC)
	c.HumidityRH = append(c.HumidityRH, humRH)
	c.PressurePa = append(c.PressurePa, pressPa)
}

// Empty returns Columns with non-nil, empty columns, so JSON shows [] not null.
func Empty() Columns {
	return Columns{T: []int64{}, TempC: []float64{}, HumidityRH: []float64{}, PressurePa: []float64{}}
}

// Normalize makes nil columns empty (JSON [] instead of null).
func (c *Columns) Normalize() {
	if c.T == nil {
		*c = Empty()
	}
}

// MS converts microseconds since the epoch to milliseconds (floor).
func MS(us int64) int64 {
	if us < 0 {
		return -((-us + 999) / 1000)
	}
	return us / 1000
}

// AppendSilver adds a silver row's window start and averages, and reports
// false (adding nothing) if a value is not finite.
func (c *Columns) AppendSilver(r *schema.SilverRow) bool {
	if !Finite(r.TempAvg, r.HumidityAvg, r.PressureAvg) {
		return false
	}
	c.Append(MS(r.WindowStart), r.TempAvg, r.HumidityAvg, r.PressureAvg)
	return true
}

// AppendGold adds a gold row's window start and moving averages, and reports
// false (adding nothing) if a value is not finite.
func (c *Columns) AppendGold(r *schema.GoldRow) bool {
	if !Finite(r.TempC, r.HumidityRH, r.PressurePa) {
		return false
	}
	c.Append(MS(r.WindowStart), r.TempC, r.HumidityRH, r.PressurePa)
	return true
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
	var out Columns
	for k, i := range idx {
		if k+1 < n && c.T[idx[k+1]] == c.T[i] {
			continue // a later duplicate follows; keep it instead
		}
		out.Append(c.T[i], c.TempC[i], c.HumidityRH[i], c.PressurePa[i])
	}
	*c = out
}

// Decimate reduces c to at most about maxPoints points by averaging the
// points that fall in each of maxPoints equal time buckets over [fromMS, toMS);
// each bucket becomes one point at the mean time of its members. c must be
// sorted and hold finite values. If c already fits, it is returned unchanged.
func Decimate(c Columns, fromMS, toMS int64, maxPoints int) Columns {
	n := c.Len()
	if maxPoints <= 0 || n <= maxPoints {
		return c
	}
	if toMS <= fromMS || c.T[0] < fromMS || c.T[n-1] >= toMS {
		fromMS, toMS = c.T[0], c.T[n-1]+1
	}
	width := (toMS - fromMS + int64(maxPoints) - 1) / int64(maxPoints)
	if width < 1 {
		width = 1
	}
	out := Columns{}
	for i := 0; i < n; {
		b := (c.T[i] - fromMS) / width
		var sumT, sumTemp, sumHum, sumPress float64
		j := i
		for ; j < n && (c.T[j]-fromMS)/width == b; j++ {
			sumT += float64(c.T[j])
			sumTemp += c.TempC[j]
			sumHum += c.HumidityRH[j]
			sumPress += c.PressurePa[j]
		}
		k := float64(j - i)
		out.Append(int64(math.Round(sumT/k)), sumTemp/k, sumHum/k, sumPress/k)
		i = j
	}
	return out
}

// Finite reports whether all three values are finite numbers (JSON cannot
// carry NaN or ±Inf, and a chart cannot draw them).
func Finite(tempC, humRH, pressPa float64) bool {
	return !math.IsNaN(tempC+humRH+pressPa) && !math.IsInf(tempC+humRH+pressPa, 0)
}
