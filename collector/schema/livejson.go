package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// AppendJSON appends u encoded as JSON to b: the same bytes json.Marshal(u)
// produces, without reflection or allocation (the collector encodes one
// update per batch). Like json.Marshal it refuses NaN and ±Inf, which JSON
// cannot carry; b is then returned unchanged.
func (u *LiveUpdate) AppendJSON(b []byte) ([]byte, error) {
	start := len(b)
	b = append(b, `{"device":`...)
	b = appendString(b, u.Device)
	b = append(b, `,"newest_capture_us":`...)
	b = strconv.AppendInt(b, u.NewestCaptureUS, 10)
	b = append(b, `,"published_us":`...)
	b = strconv.AppendInt(b, u.PublishedUS, 10)
	b = append(b, `,"watermark_us":`...)
	b = strconv.AppendInt(b, u.WatermarkUS, 10)
	b = append(b, `,"silver":`...)
	ok := true
	if u.Silver == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range u.Silver {
			if i > 0 {
				b = append(b, ',')
			}
			r := &u.Silver[i]
			b = append(b, `{"device":`...)
			b = appendString(b, r.Device)
			b = append(b, `,"window_start":`...)
			b = strconv.AppendInt(b, r.WindowStart, 10)
			b = append(b, `,"window_end":`...)
			b = strconv.AppendInt(b, r.WindowEnd, 10)
			b = append(b, `,"count":`...)
			b = strconv.AppendInt(b, r.Count, 10)
			b = append(b, `,"fresh_count":`...)
			b = strconv.AppendInt(b, r.FreshCount, 10)
			b, ok = appendFloatField(b, `,"temp_avg":`, r.TempAvg, ok)
			b, ok = appendFloatField(b, `,"temp_min":`, r.TempMin, ok)
			b, ok = appendFloatField(b, `,"temp_max":`, r.TempMax, ok)
			b, ok = appendOptFloatField(b, `,"pressure_avg":`, r.PressureAvg, ok)
			b, ok = appendOptFloatField(b, `,"pressure_min":`, r.PressureMin, ok)
			b, ok = appendOptFloatField(b, `,"pressure_max":`, r.PressureMax, ok)
			b, ok = appendOptFloatField(b, `,"humidity_avg":`, r.HumidityAvg, ok)
			b, ok = appendOptFloatField(b, `,"humidity_min":`, r.HumidityMin, ok)
			b, ok = appendOptFloatField(b, `,"humidity_max":`, r.HumidityMax, ok)
			b = append(b, `,"final":`...)
			b = strconv.AppendBool(b, r.Final)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"gold":`...)
	if u.Gold == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range u.Gold {
			if i > 0 {
				b = append(b, ',')
			}
			r := &u.Gold[i]
			b = append(b, `{"device":`...)
			b = appendString(b, r.Device)
			b = append(b, `,"window_start":`...)
			b = strconv.AppendInt(b, r.WindowStart, 10)
			b = append(b, `,"n":`...)
			b = strconv.AppendInt(b, int64(r.N), 10)
			b = append(b, `,"windows":`...)
			b = strconv.AppendInt(b, int64(r.Windows), 10)
			b, ok = appendFloatField(b, `,"temp_c":`, r.TempC, ok)
			b, ok = appendOptFloatField(b, `,"pressure_pa":`, r.PressurePa, ok)
			b, ok = appendOptFloatField(b, `,"humidity_rh":`, r.HumidityRH, ok)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	if !ok {
		return b[:start], fmt.Errorf("encoding live update of %q: %w", u.Device, ErrNonFinite)
	}
	return b, nil
}

// ErrNonFinite is wrapped by AppendJSON's error for NaN and ±Inf values.
var ErrNonFinite = errors.New("NaN or infinite value")

// appendFloatField appends key and f formatted as encoding/json does
// (shortest representation; exponent form below 1e-6 and from 1e21, with
// the exponent's leading zero dropped), and reports ok && f is finite.
func appendFloatField(b []byte, key string, f float64, ok bool) ([]byte, bool) {
	b = append(b, key...)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, '0'), false
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 → e-9, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, ok
}

// appendOptFloatField is appendFloatField of *f, or null when f is nil.
func appendOptFloatField(b []byte, key string, f *float64, ok bool) ([]byte, bool) {
	if f == nil {
		return append(append(b, key...), "null"...), ok
	}
	return appendFloatField(b, key, *f, ok)
}

// appendString appends s as a JSON string. Device IDs are plain printable
// ASCII and are copied as they are; anything else goes through
// encoding/json, whose escaping (HTML characters, invalid UTF-8, U+2028)
// this then matches.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			js, _ := json.Marshal(s) // a string always encodes
			return append(b, js...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
