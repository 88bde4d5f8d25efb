package hw

import (
	"math"
	"time"

	"periph.io/x/devices/v3/bmxx80"
)

// osrsCount returns the oversampling count for an osrs_x register field
// (datasheet section 5.4, ctrl_hum and ctrl_meas): 0 skipped, 1, 2, 4, 8, 16 (5..7 = 16).
func osrsCount(field byte) int {
	switch field & 7 {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return 2
	case 3:
		return 4
	case 4:
		return 8
	}
	return 16
}

// adcStep returns the raw 20-bit step for a 16+(osrs−1)-bit result without
// the IIR filter (datasheet 3.4.2, 3.4.3).
func adcStep(field byte) int32 {
	switch field & 7 {
	case 0, 1:
		return 16
	case 2:
		return 8
	case 3:
		return 4
	case 4:
		return 2
	}
	return 1
}

// filterCoef returns the IIR coefficient for the config filter field
// (datasheet section 5.4.6, config): 1 (off), 2, 4, 8, 16.
func filterCoef(field byte) float64 {
	switch field & 7 {
	case 0:
		return 1
	case 1:
		return 2
	case 2:
		return 4
	case 3:
		return 8
	}
	return 16
}

// standbyTime returns t_standby for the config t_sb field (datasheet section
// 5.4.6, config): 0.5, 62.5, 125, 250, 500, 1000 ms for codes 0..5; codes 6
// and 7 are 10 and 20 ms on a BME280 but 2000 and 4000 ms on a BMP280
// (BMP280 data sheet, table 11).
func standbyTime(field byte, bme bool) time.Duration {
	t := [8]time.Duration{
		500 * time.Microsecond, 62500 * time.Microsecond, 125 * time.Millisecond,
		250 * time.Millisecond, 500 * time.Millisecond, time.Second,
		10 * time.Millisecond, 20 * time.Millisecond,
	}
	if !bme {
		t[6], t[7] = 2*time.Second, 4*time.Second
	}
	return t[field&7]
}

// measureTime returns the active measurement time for oversampling counts
// (0 = skipped), from datasheet appendix B section 9.1:
// typical 1 + 2·T + (2·P + 0.5) + (2·H + 0.5) ms,
// maximum 1.25 + 2.3·T + (2.3·P + 0.575) + (2.3·H + 0.575) ms.
func measureTime(t, p, h int, max bool) time.Duration {
	base, per, extra := 1.0, 2.0, 0.5
	if max {
		base, per, extra = 1.25, 2.3, 0.575
	}
	ms := base + per*float64(t)
	if p > 0 {
		ms += per*float64(p) + extra
	}
	if h > 0 {
		ms += per*float64(h) + extra
	}
	return time.Duration(ms * float64(time.Millisecond))
}

// Sensor noise, RMS, for one conversion without the IIR filter (see the
// package documentation, "Signal model", for the sources).

// noiseTemp: 0.005 °C at ×1, falling as 1/√n with oversampling n.
func noiseTemp(n int) float64 { return 0.005 / math.Sqrt(float64(n)) }

// noisePress: 3.3 Pa at ×1 and 1.3 Pa at ×16, a power law in between.
func noisePress(n int) float64 { return 3.3 * math.Pow(float64(n), -0.336) }

// noiseHum: the BME280 data sheet's RMS humidity noise per oversampling
// (section 3.6, noise in humidity): 0.07, 0.05, 0.04, 0.03, 0.02 %RH at ×1,
// ×2, ×4, ×8, ×16. The 0.02 %RH of section 1 is the ×16 figure.
func noiseHum(n int) float64 {
	switch {
	case n <= 1:
		return 0.07
	case n == 2:
		return 0.05
	case n <= 4:
		return 0.04
	case n <= 8:
		return 0.03
	}
	return 0.02
}

// Rate is a conversion rate of a real sensor.
type Rate struct {
	// Typical and Min are conversions per second with the datasheet's
	// typical and maximum measurement times.
	Typical, Min float64
	// Measure is the typical active measurement time; Standby the standby
	// time between measurements in normal mode (0 in forced mode).
	Measure, Standby time.Duration
}

// ConversionRate returns how many fresh conversions per second a BME280
// delivers with opts (datasheet appendix B, sections 9.1–9.3). In normal
// mode (opts.Filter != NoFilter and opts.Standby != 0, as bmxx80 decides)
// the rate is 1/(t_measure + t_standby), with the standby time bmxx80 picks
// for opts.Standby. In forced mode it is the upper bound 1/t_measure. Polling
// faster than this returns repeated values. humidity false means humidity is
// skipped. For a BMP280, whose standby table differs, use ConversionRateFor.
func ConversionRate(opts *bmxx80.Opts, humidity bool) Rate {
	return conversionRate(opts, humidity, true)
}

// ConversionRateFor is ConversionRate for the chip with id chipID
// (ChipIDBME280 or ChipIDBMP280, which has no humidity and a standby table
// that goes to 4 s).
func ConversionRateFor(opts *bmxx80.Opts, chipID byte) Rate {
	bme := chipID != ChipIDBMP280
	return conversionRate(opts, bme && opts.Humidity != bmxx80.Off, bme)
}

func conversionRate(opts *bmxx80.Opts, humidity, bme bool) Rate {
	h := 0
	if humidity {
		h = osrsCount(byte(opts.Humidity))
	}
	t, p := osrsCount(byte(opts.Temperature)), osrsCount(byte(opts.Pressure))
	r := Rate{Measure: measureTime(t, p, h, false)}
	tmax := measureTime(t, p, h, true)
	if opts.Filter != bmxx80.NoFilter && opts.Standby != 0 {
		r.Standby = standbyTime(standbyField(opts.Standby, bme), bme)
	}
	r.Typical = 1 / (r.Measure + r.Standby).Seconds()
	r.Min = 1 / (tmax + r.Standby).Seconds()
	return r
}

// standbyField mirrors bmxx80's choice of t_sb for a requested standby: the
// longest table entry not above the request, with 0.5 ms below 10 ms; a
// BME280 has 10 and 20 ms and stops at 1 s, a BMP280 goes on to 2 and 4 s.
func standbyField(d time.Duration, bme bool) byte {
	switch {
	case d < 10*time.Millisecond:
		return 0
	case bme && d < 20*time.Millisecond:
		return 6
	case bme && d < 62500*time.Microsecond:
		return 7
	case d < 125*time.Millisecond:
		return 1
	case d < 250*time.Millisecond:
		return 2
	case d < 500*time.Millisecond:
		return 3
	case d < time.Second:
		return 4
	case bme || d < 2*time.Second:
		return 5
	case d < 4*time.Second:
		return 6
	}
	return 7
}
