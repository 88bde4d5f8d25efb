package stages

import (
	"encoding/json"
	"fmt"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
)

func batchStream(b *wire.Batch) string {
	return b.DeviceID + "/" + fmt.Sprintf("%016x", b.BootID)
}

// window is an open silver window's running aggregate in the sensor's
// fixed-point units (order-independent). Pressure and humidity aggregate
// the PN and HN readings that have the value (batches flagged
// wire.FlagNoPressure / FlagNoHumidity have none).
type window struct {
	Start int64  `json:"s"`
	N     int64  `json:"n"`
	Fresh int64  `json:"f"`
	TSum  int64  `json:"ts"`
	TMin  int32  `json:"tn"`
	TMax  int32  `json:"tx"`
	PN    int64  `json:"pc"`
	PSum  int64  `json:"ps"`
	PMin  uint32 `json:"pn"`
	PMax  uint32 `json:"px"`
	HN    int64  `json:"hc"`
	HSum  int64  `json:"hs"`
	HMin  uint32 `json:"hn"`
	HMax  uint32 `json:"hx"`
}

// add folds r in; press and hum say whether it has those values.
func (w *window) add(r *wire.Reading, press, hum bool) {
	if w.N == 0 {
		w.TMin, w.TMax = r.Temp, r.Temp
	} else {
		w.TMin, w.TMax = min(w.TMin, r.Temp), max(w.TMax, r.Temp)
	}
	w.N++
	if r.Fresh {
		w.Fresh++
	}
	w.TSum += int64(r.Temp)
	if press {
		if w.PN == 0 {
			w.PMin, w.PMax = r.Press, r.Press
		} else {
			w.PMin, w.PMax = min(w.PMin, r.Press), max(w.PMax, r.Press)
		}
		w.PN++
		w.PSum += int64(r.Press)
	}
	if hum {
		if w.HN == 0 {
			w.HMin, w.HMax = r.Hum, r.Hum
		} else {
			w.HMin, w.HMax = min(w.HMin, r.Hum), max(w.HMax, r.Hum)
		}
		w.HN++
		w.HSum += int64(r.Hum)
	}
}

func (w *window) row(device string, width int64) schema.SilverRow {
	n := float64(w.N)
	row := schema.SilverRow{
		Device: device, WindowStart: w.Start, WindowEnd: w.Start + width, Count: w.N, FreshCount: w.Fresh,
		TempAvg: float64(w.TSum) / n / 100, TempMin: float64(w.TMin) / 100, TempMax: float64(w.TMax) / 100,
	}
	if w.PN > 0 || w.HN > 0 {
		v := new([6]float64) // one allocation for the row's present values
		if w.PN > 0 {
			v[0], v[1], v[2] = float64(w.PSum)/float64(w.PN)/256, float64(w.PMin)/256, float64(w.PMax)/256
			row.PressureAvg, row.PressureMin, row.PressureMax = &v[0], &v[1], &v[2]
		}
		if w.HN > 0 {
			v[3], v[4], v[5] = float64(w.HSum)/float64(w.HN)/1024, float64(w.HMin)/1024, float64(w.HMax)/1024
			row.HumidityAvg, row.HumidityMin, row.HumidityMax = &v[3], &v[4], &v[5]
		}
	}
	return row
}

// hist is a final window's averages, kept for gold; P and H are NaN when
// the window has no such value.
type hist struct {
	Start int64   `json:"s"`
	T     float64 `json:"t"`
	P     float64 `json:"p"`
	H     float64 `json:"h"`
}

// device is one device's silver and gold state.
type device struct {
	// MaxEvent is the largest event time seen (µs); the watermark is
	// MaxEvent - AllowedLateness.
	MaxEvent int64 `json:"max_event"`
	// ClosedBefore: windows starting before it are final.
	ClosedBefore int64 `json:"closed_before"`
	// Open windows, sorted by start.
	Open []window `json:"open"`
	// Hist holds the last maxN final windows, oldest first.
	Hist []hist `json:"hist"`
}

// checkpoint is the stage state after an epoch, stored as
// _checkpoints/stages/{epoch:020d}.json before the epoch's bronze commit.
type checkpoint struct {
	Epoch          int64           `json:"epoch"`
	WindowUS       int64           `json:"window_us"`
	LatenessUS     int64           `json:"allowed_lateness_us"`
	MovingAverages []int           `json:"moving_averages"`
	Landed         json.RawMessage `json:"landed"` // map[string]landing.SeqRanges, encoded when the epoch is cut
	// Segments holds the landing segments whose every batch is processed:
	// per Lander instance, a landing.SeqRanges of segment counters. Absent in
	// checkpoints written before segments.
	Segments      json.RawMessage            `json:"segments,omitempty"`
	DevicesObject string                     `json:"devices_object"`
	Pending       map[string][]delta.AddFile `json:"pending"` // table → add actions of this epoch (not bronze)
	GoldStaged    []string                   `json:"gold_staged"`
	// LandingFrom and LandingKept (unix seconds of an hour; absent: unknown)
	// are the landing lifecycle's positions (lifecycle.go).
	LandingFrom int64 `json:"landing_from,omitempty"`
	LandingKept int64 `json:"landing_kept,omitempty"`
}

// decodeLandedState parses and validates a checkpoint's landed and segments
// sets (untrusted input: the lake may have been altered).
func decodeLandedState(landedJS, segmentsJS json.RawMessage) (landed, segments map[string]landing.SeqRanges, err error) {
	landed, segments = map[string]landing.SeqRanges{}, map[string]landing.SeqRanges{}
	if err := json.Unmarshal(landedJS, &landed); err != nil {
		return nil, nil, fmt.Errorf("%w: landed set: %v", errState, err)
	}
	if landed == nil { // "null"
		landed = map[string]landing.SeqRanges{}
	}
	for k, set := range landed {
		if !set.Valid() {
			return nil, nil, fmt.Errorf("%w: landed set: stream %q has bad ranges", errState, k)
		}
	}
	if len(segmentsJS) > 0 {
		if err := json.Unmarshal(segmentsJS, &segments); err != nil {
			return nil, nil, fmt.Errorf("%w: segments set: %v", errState, err)
		}
		if segments == nil {
			segments = map[string]landing.SeqRanges{}
		}
	}
	for k, set := range segments {
		if !landing.ValidInstance(k) {
			return nil, nil, fmt.Errorf("%w: segments set: bad instance %q", errState, k)
		}
		if !set.Valid() {
			return nil, nil, fmt.Errorf("%w: segments set: instance %q has bad ranges", errState, k)
		}
	}
	return landed, segments, nil
}

func goldStageName(epoch int64) string {
	return fmt.Sprintf("%sstages/gold/%020d.parquet", schema.Checkpoints, epoch)
}

func devicesName(epoch int64) string {
	return fmt.Sprintf("%sstages/%020d.devices", schema.Checkpoints, epoch)
}

func checkpointName(epoch int64) string {
	return fmt.Sprintf("%sstages/%020d.json", schema.Checkpoints, epoch)
}
