package stages

import (
	"math"
	"slices"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/schema"
)

// folder is the silver and gold logic, free of I/O: it folds readings into
// per-device windows, finalises windows as watermarks pass, and collects the
// epoch's silver, silver_late and gold rows.
type folder struct {
	width, lateness int64
	mas             []int
	maxN            int
	devices         map[string]*device

	silver []schema.SilverRow
	late   []schema.SilverLateRow
	gold   []schema.GoldRow

	touched []int64 // scratch: window starts a batch touched
	hscr    []hist  // scratch: provisional gold history
	fs      floats  // the rows' nullable values
}

func newFolder(width, lateness int64, mas []int) *folder {
	f := &folder{width: width, lateness: lateness, mas: mas, devices: map[string]*device{}}
	for _, n := range mas {
		f.maxN = max(f.maxN, n)
	}
	return f
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func (f *folder) device(id string) *device {
	d := f.devices[id]
	if d == nil {
		d = &device{MaxEvent: math.MinInt64, ClosedBefore: math.MinInt64}
		f.devices[id] = d
	}
	return d
}

// watermark returns d's watermark (µs), or MinInt64 before its first reading.
func (f *folder) watermark(d *device) int64 {
	if d.MaxEvent == math.MinInt64 {
		return math.MinInt64
	}
	return d.MaxEvent - f.lateness
}

// fold adds readings of batch b (non-decreasing timestamps) to dev's windows,
// sends those of final windows to silver_late, then advances dev's watermark
// and finalises the windows it passed. If live is non-nil it is filled with
// the windows the batch touched (provisional or just final) and their gold rows.
// It returns the number of late readings.
func (f *folder) fold(b *wire.Batch, readings []wire.Reading, row schema.BronzeRow, live *schema.LiveUpdate) int {
	d := f.device(b.DeviceID)
	nlate := 0
	cur := -1 // index of the open window last used
	f.touched = f.touched[:0]
	var maxTS int64 = math.MinInt64
	press, hum := b.Flags&wire.FlagNoPressure == 0, b.Flags&wire.FlagNoHumidity == 0
	for i := range readings {
		r := &readings[i]
		maxTS = max(maxTS, r.TimeUS)
		ws := floorDiv(r.TimeUS, f.width) * f.width
		if ws < d.ClosedBefore {
			nlate++
			lr := row
			lr.TS, lr.TempC, lr.Fresh = r.TimeUS, r.TempC(), r.Fresh
			lr.PressurePa, lr.HumidityRH = nil, nil
			if press {
				lr.PressurePa = schema.Float(r.PressurePa())
			}
			if hum {
				lr.HumidityRH = schema.Float(r.HumidityRH())
			}
			f.late = append(f.late, schema.SilverLateRow{BronzeRow: lr, WindowStart: ws, Watermark: f.watermark(d)})
			continue
		}
		if cur < 0 || d.Open[cur].Start != ws {
			j, found := slices.BinarySearchFunc(d.Open, ws, func(w window, s int64) int {
				switch {
				case w.Start < s:
					return -1
				case w.Start > s:
					return 1
				}
				return 0
			})
			if !found {
				d.Open = slices.Insert(d.Open, j, window{Start: ws})
			}
			cur = j
			if live != nil {
				f.touched = append(f.touched, ws)
			}
		}
		if press && hum {
			d.Open[cur].addAll(r)
		} else {
			d.Open[cur].add(r, press, hum)
		}
	}
	if maxTS > d.MaxEvent {
		d.MaxEvent = maxTS
	}
	nfinal := len(f.silver)
	ngold := len(f.gold)
	if wm := f.watermark(d); wm != math.MinInt64 {
		f.closeBefore(b.DeviceID, d, floorDiv(wm, f.width)*f.width)
	}
	if live != nil {
		f.fillLive(b.DeviceID, d, live, nfinal, ngold, maxTS)
	}
	return nlate
}

// closeBefore finalises dev's open windows starting before cb.
func (f *folder) closeBefore(id string, d *device, cb int64) {
	if cb <= d.ClosedBefore {
		return
	}
	k := 0
	for k < len(d.Open) && d.Open[k].Start < cb {
		f.finalize(id, d, &d.Open[k])
		k++
	}
	d.Open = slices.Delete(d.Open, 0, k)
	d.ClosedBefore = cb
}

func (f *folder) finalize(id string, d *device, w *window) {
	row := w.rowIn(id, f.width, &f.fs)
	f.silver = append(f.silver, row)
	if f.maxN == 0 {
		return
	}
	if len(d.Hist) == f.maxN {
		copy(d.Hist, d.Hist[1:])
		d.Hist = d.Hist[:f.maxN-1]
	}
	d.Hist = append(d.Hist, histOf(&row))
	for _, n := range f.mas {
		f.gold = append(f.gold, goldRow(id, d.Hist, n, &f.fs))
	}
}

// histOf is a final (or provisional) window's entry in the gold history.
func histOf(r *schema.SilverRow) hist {
	e := hist{Start: r.WindowStart, T: r.TempAvg, P: math.NaN(), H: math.NaN()}
	if r.PressureAvg != nil {
		e.P = *r.PressureAvg
	}
	if r.HumidityAvg != nil {
		e.H = *r.HumidityAvg
	}
	return e
}

// goldRow averages the last n entries of h (fewer if h is shorter), oldest
// first: temperature over all of them, pressure and humidity over those
// that have the value (nil when none has; values from fs).
func goldRow(id string, h []hist, n int, fs *floats) schema.GoldRow {
	if len(h) > n {
		h = h[len(h)-n:]
	}
	var t, p, hu float64
	var np, nh int
	for _, e := range h {
		t += e.T
		if !math.IsNaN(e.P) {
			p += e.P
			np++
		}
		if !math.IsNaN(e.H) {
			hu += e.H
			nh++
		}
	}
	g := schema.GoldRow{Device: id, WindowStart: h[len(h)-1].Start, N: int32(n), Windows: int32(len(h)),
		TempC: t / float64(len(h))}
	if np > 0 {
		g.PressurePa = fs.of(p / float64(np))
	}
	if nh > 0 {
		g.HumidityRH = fs.of(hu / float64(nh))
	}
	return g
}

// closeAll finalises every open window of every device (clean shutdown).
func (f *folder) closeAll() {
	ids := make([]string, 0, len(f.devices))
	for id := range f.devices {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		d := f.devices[id]
		if d.MaxEvent == math.MinInt64 {
			continue
		}
		f.closeBefore(id, d, floorDiv(d.MaxEvent, f.width)*f.width+f.width)
	}
}

func (f *folder) fillLive(id string, d *device, live *schema.LiveUpdate, nfinal, ngold int, newest int64) {
	live.Device = id
	live.NewestCaptureUS = newest
	live.WatermarkUS = f.watermark(d)
	live.Silver = live.Silver[:0]
	live.Gold = live.Gold[:0]
	for _, r := range f.silver[nfinal:] {
		live.Silver = append(live.Silver, schema.LiveSilver{SilverRow: r, Final: true})
	}
	live.Gold = append(live.Gold, f.gold[ngold:]...)
	for _, ws := range f.touched {
		j, found := slices.BinarySearchFunc(d.Open, ws, func(w window, s int64) int {
			switch {
			case w.Start < s:
				return -1
			case w.Start > s:
				return 1
			}
			return 0
		})
		if !found {
			continue // finalised above
		}
		row := d.Open[j].rowIn(id, f.width, &f.fs)
		live.Silver = append(live.Silver, schema.LiveSilver{SilverRow: row})
		if f.maxN == 0 {
			continue
		}
		// Provisional gold: the final history before this window, plus it.
		h := f.hscr[:0]
		for _, e := range d.Hist {
			if e.Start < ws {
				h = append(h, e)
			}
		}
		h = append(h, histOf(&row))
		f.hscr = h
		for _, n := range f.mas {
			live.Gold = append(live.Gold, goldRow(id, h, n, &f.fs))
		}
	}
}
