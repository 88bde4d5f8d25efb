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
// the window's readings that have the value (batches flagged
// wire.FlagNoPressure / FlagNoHumidity have none): N-PMiss and N-HMiss of
// them. Counting the missing ones keeps a BME280's readings (all present)
// on the path they took before values could be missing.
type window struct {
	Start int64  `json:"s"`
	N     int64  `json:"n"`
	Fresh int64  `json:"f"`
	TSum  int64  `json:"ts"`
	TMin  int32  `json:"tn"`
	TMax  int32  `json:"tx"`
	PMiss int64  `json:"pm"` // readings without pressure
	PSum  int64  `json:"ps"`
	PMin  uint32 `json:"pn"`
	PMax  uint32 `json:"px"`
	HMiss int64  `json:"hm"` // readings without humidity
	HSum  int64  `json:"hs"`
	HMin  uint32 `json:"hn"`
	HMax  uint32 `json:"hx"`
}

// pressN and humN are the window's readings with pressure, with humidity.
func (w *window) pressN() int64 { return w.N - w.PMiss }
func (w *window) humN() int64   { return w.N - w.HMiss }

// addAll folds in r, which has pressure and humidity (a BME280's): the
// common case, as cheap as before values could be missing.
func (w *window) addAll(r *wire.Reading) {
	if w.N == w.PMiss || w.N == w.HMiss { // the window's first reading, or first with those values
		w.add(r, true, true)
		return
	}
	w.TMin, w.TMax = min(w.TMin, r.Temp), max(w.TMax, r.Temp)
	w.PMin, w.PMax = min(w.PMin, r.Press), max(w.PMax, r.Press)
	w.HMin, w.HMax = min(w.HMin, r.Hum), max(w.HMax, r.Hum)
	w.N++
	if r.Fresh {
		w.Fresh++
	}
	w.TSum += int64(r.Temp)
	w.PSum += int64(r.Press)
	w.HSum += int64(r.Hum)
}

// add folds r in; press and hum say whether it has those values.
func (w *window) add(r *wire.Reading, press, hum bool) {
	if w.N == 0 {
		w.TMin, w.TMax = r.Temp, r.Temp
	} else {
		w.TMin, w.TMax = min(w.TMin, r.Temp), max(w.TMax, r.Temp)
	}
	if press {
		if w.pressN() == 0 {
			w.PMin, w.PMax = r.Press, r.Press
		} else {
			w.PMin, w.PMax = min(w.PMin, r.Press), max(w.PMax, r.Press)
		}
		w.PSum += int64(r.Press)
	} else {
		w.PMiss++
	}
	if hum {
		if w.humN() == 0 {
			w.HMin, w.HMax = r.Hum, r.Hum
		} else {
			w.HMin, w.HMax = min(w.HMin, r.Hum), max(w.HMax, r.Hum)
		}
		w.HSum += int64(r.Hum)
	} else {
		w.HMiss++
	}
	w.N++
	if r.Fresh {
		w.Fresh++
	}
	w.TSum += int64(r.Temp)
}

func (w *window) row(device string, width int64) schema.SilverRow { return w.rowIn(device, width, nil) }

// rowIn is row with its nullable values taken from fs.
func (w *window) rowIn(device string, width int64, fs *floats) schema.SilverRow {
	n := float64(w.N)
	row := schema.SilverRow{
		Device: device, WindowStart: w.Start, WindowEnd: w.Start + width, Count: w.N, FreshCount: w.Fresh,
		TempAvg: float64(w.TSum) / n / 100, TempMin: float64(w.TMin) / 100, TempMax: float64(w.TMax) / 100,
	}
	if pn := w.pressN(); pn > 0 {
		row.PressureAvg = fs.of(float64(w.PSum) / float64(pn) / 256)
		row.PressureMin, row.PressureMax = fs.of(float64(w.PMin)/256), fs.of(float64(w.PMax)/256)
	}
	if hn := w.humN(); hn > 0 {
		row.HumidityAvg = fs.of(float64(w.HSum) / float64(hn) / 1024)
		row.HumidityMin, row.HumidityMax = fs.of(float64(w.HMin)/1024), fs.of(float64(w.HMax)/1024)
	}
	return row
}

// floats hands out the *float64 of rows' nullable values from chunks, so
// that a row costs no allocation of its own (a chunk is never reused: it
// is garbage once no row points into it). A nil *floats allocates each.
type floats struct{ buf []float64 }

func (fs *floats) of(v float64) *float64 {
	if fs == nil {
		p := new(float64) // not &v: v would then escape on every call
		*p = v
		return p
	}
	if len(fs.buf) == cap(fs.buf) {
		fs.buf = make([]float64, 0, 1024)
	}
	fs.buf = append(fs.buf, v)
	return &fs.buf[len(fs.buf)-1]
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
