package sample

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/physic"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/hw"
	"github.com/pilake/pilake/internal/backoff"
	"github.com/pilake/pilake/internal/clock"
)

// Sensor is what the sampler reads: hw.Sensor on a real or a fake bus.
type Sensor interface {
	// Sense reads one measurement; hw.ErrSensorReset (wrapped) means the
	// sensor lost its configuration.
	Sense(e *physic.Env) error
	// Reinit checks the chip id, re-reads the calibration and configures
	// the sensor again.
	Reinit() error
}

// FixedReader is a Sensor that can also read the compensation's fixed-point
// outputs directly, without bmxx80's per-call allocations and the round trip
// through physic units (hw.Sensor.ReadFixed: the same integers, checked
// against bmxx80 on every poll by hw's tests). The sampler uses it when
// available, unless Options.DriverSense is set.
type FixedReader interface {
	ReadFixed(r *hw.Fixed) error
}

var (
	_ Sensor      = (*hw.Sensor)(nil)
	_ FixedReader = (*hw.Sensor)(nil)
)

// Observer takes observations, as a prometheus.Histogram does.
type Observer interface {
	Observe(float64)
}

// Options configures a Sampler.
type Options struct {
	// Sensor is polled. Required.
	Sensor Sensor
	// DeviceID and BootID name the batches. Required (BootID random per start).
	DeviceID string
	BootID   uint64
	// Rate is the polling rate in Hz (default 400).
	Rate float64
	// BatchInterval is how much time one batch covers (default 1 s).
	BatchInterval time.Duration
	// AlignBatches cuts batches at whole multiples of BatchInterval of the
	// wall clock at start (on whole seconds by default), as Telegraf's
	// round_interval does: a fleet with synchronised clocks then sends
	// each second's batches together, so a chart of many devices gets
	// them in one update rather than spread over the second. The first
	// batch is shorter. Later wall-clock steps do not move the grid.
	AlignBatches bool
	// NoHumidity marks batches wire.FlagNoHumidity (a BMP280).
	NoHumidity bool
	// ReadTimeout bounds one read (default 100 ms).
	ReadTimeout time.Duration
	// DriverSense makes the sampler read through bmxx80's Sense and FromEnv
	// even when the sensor is a FixedReader (same values, two allocations
	// per read).
	DriverSense bool
	// Settle is how long to wait after a re-initialisation before reading
	// (at least one measurement time; default 50 ms).
	Settle time.Duration
	// FrozenAfter is how long unchanged values mean a frozen sensor (default 2 s).
	FrozenAfter time.Duration
	// Clock drives the schedule (default clock.Real, which sleeps to the
	// microsecond; see clock.SleepUntil).
	Clock clock.Clock
	// ClockSynced reports whether the wall clock is NTP-synchronised; asked
	// once per batch (default: never synced).
	ClockSynced func() bool
	// WallMinusMono returns wall clock minus the monotonic clock (time since
	// boot) in µs; asked once per reading (default 0). A reading's timestamp
	// is its tick's due time on the monotonic clock plus its batch's
	// MonoOffsetUS; when the offset moves by more than ClockStepUS (the wall
	// clock was stepped: NTP setting a Pi's clock, an operator), the batch is
	// cut there and the next one carries the new offset and
	// wire.FlagClockStepped. So no reading is dropped or given a made-up
	// time by a step, and a collector can re-base each batch.
	WallMinusMono func() int64
	// LatenessObserver, when set, also receives each tick's lateness in
	// seconds (the agent passes a prometheus.Histogram). It is called on
	// the sampling path: it must not block or allocate.
	LatenessObserver Observer
	// QueueLen is how many finished batches may wait for the consumer (default 8).
	QueueLen int
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Stats are the sampler's counters since it started.
type Stats struct {
	Ticks, MissedTicks                  int64
	Readings, Fresh, Repeated           int64
	ReadErrors, Timeouts, Reinits       int64
	ReinitErrors, OutOfRange            int64
	Batches, DroppedBatches, DroppedRdg int64
	// NotReady counts polls before the sensor's first conversion after a
	// (re-)initialisation: nothing to record, not an error.
	NotReady int64
	// ClockSteps counts wall-clock steps seen (each cut a batch).
	ClockSteps int64
}

// ClockStepUS is how far (µs) wall minus monotonic must move between two
// readings to count as a step of the wall clock: NTP slews at most 500 ppm
// (1.25 µs per 2.5 ms tick), so anything this large was set, not slewed.
const ClockStepUS = 100_000

// Health is the sensor's condition as the sampler sees it.
type Health struct {
	// OK is true when the last read succeeded and values are changing.
	OK bool
	// State is "ok", "starting", "errors", "stuck", "frozen", or "reinit-failed".
	State string
	// LastError is the last read or re-initialisation error ("" if none).
	LastError string
	// ConsecutiveErrors counts failed reads since the last good one.
	ConsecutiveErrors int
	// Since is when State last changed.
	Since time.Time
}

// Sampler polls a Sensor and emits batches on Batches().
type Sampler struct {
	cfg      Options
	log      *slog.Logger
	interval time.Duration
	perBatch int64

	out  chan *wire.Batch
	pool sync.Pool

	lateness Hist

	ticks, missed, readings, fresh, repeated        atomic.Int64
	readErrs, timeouts, reinits, reinitErrs, oorCnt atomic.Int64
	batches, droppedBatches, droppedRdg             atomic.Int64
	clockSteps                                      atomic.Int64
	notReady                                        atomic.Int64

	hmu      sync.Mutex
	health   Health
	hchanged chan struct{}

	// readStart is the real time (UnixNano) the current read began, 0 when
	// no read is running; the watchdog reads it.
	readStart atomic.Int64
	flagged   atomic.Int64 // readStart of the last read the watchdog reported
}

type op uint8

const (
	opSense op = iota
	opReinit
)

type readResult struct {
	temp       int32
	press, hum uint32
	err        error
}

// New validates cfg and returns a Sampler.
func New(cfg Options) (*Sampler, error) {
	if cfg.Sensor == nil {
		return nil, errors.New("sampler: no sensor")
	}
	if !wire.ValidDeviceID(cfg.DeviceID) {
		return nil, fmt.Errorf("sampler: device id %q: want 1-%d of [A-Za-z0-9._-]", cfg.DeviceID, wire.MaxDeviceIDLen)
	}
	if cfg.Rate == 0 {
		cfg.Rate = 400
	}
	if cfg.Rate < 0.01 || cfg.Rate > 10000 {
		return nil, fmt.Errorf("sampler: rate %g Hz outside 0.01..10000", cfg.Rate)
	}
	if cfg.BatchInterval == 0 {
		cfg.BatchInterval = time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 100 * time.Millisecond
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 50 * time.Millisecond
	}
	if cfg.FrozenAfter <= 0 {
		cfg.FrozenAfter = 2 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real
	}
	if cfg.ClockSynced == nil {
		cfg.ClockSynced = func() bool { return false }
	}
	if cfg.WallMinusMono == nil {
		cfg.WallMinusMono = func() int64 { return 0 }
	}
	if cfg.QueueLen <= 0 {
		cfg.QueueLen = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	if interval < time.Microsecond {
		return nil, errors.New("sampler: rate too high")
	}
	perBatch := int64(cfg.BatchInterval / interval)
	if perBatch < 1 || perBatch > wire.MaxReadings {
		return nil, fmt.Errorf("sampler: a batch interval of %v at %g Hz gives %d readings per batch, want 1..%d",
			cfg.BatchInterval, cfg.Rate, perBatch, wire.MaxReadings)
	}
	s := &Sampler{
		cfg: cfg, log: cfg.Logger, interval: interval, perBatch: perBatch,
		out: make(chan *wire.Batch, cfg.QueueLen), hchanged: make(chan struct{}, 1),
	}
	s.pool.New = func() any { return &wire.Batch{Readings: make([]wire.Reading, 0, perBatch)} }
	s.health = Health{State: "starting", Since: cfg.Clock.Now()}
	return s, nil
}

// Interval is the polling interval.
func (s *Sampler) Interval() time.Duration { return s.interval }

// Batches delivers finished batches; give each back with Release once
// encoded. It is closed when Run returns, after the last partial batch.
func (s *Sampler) Batches() <-chan *wire.Batch { return s.out }

// Release returns a batch from Batches for reuse.
func (s *Sampler) Release(b *wire.Batch) {
	b.Readings = b.Readings[:0]
	s.pool.Put(b)
}

// Lateness is the tick lateness histogram.
func (s *Sampler) Lateness() *Hist { return &s.lateness }

// Stats returns the counters.
func (s *Sampler) Stats() Stats {
	return Stats{
		Ticks: s.ticks.Load(), MissedTicks: s.missed.Load(),
		Readings: s.readings.Load(), Fresh: s.fresh.Load(), Repeated: s.repeated.Load(),
		ReadErrors: s.readErrs.Load(), Timeouts: s.timeouts.Load(), Reinits: s.reinits.Load(),
		ReinitErrors: s.reinitErrs.Load(), OutOfRange: s.oorCnt.Load(),
		Batches: s.batches.Load(), DroppedBatches: s.droppedBatches.Load(), DroppedRdg: s.droppedRdg.Load(),
		NotReady: s.notReady.Load(), ClockSteps: s.clockSteps.Load(),
	}
}

// HealthChanged receives a value after Health's State changes.
func (s *Sampler) HealthChanged() <-chan struct{} { return s.hchanged }

// Health returns the sensor's condition.
func (s *Sampler) Health() Health {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	return s.health
}

func (s *Sampler) setHealth(state string, err error, consecutive int) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	h := &s.health
	if h.State != state {
		prev := h.State
		h.State, h.Since = state, s.cfg.Clock.Now()
		select {
		case s.hchanged <- struct{}{}:
		default:
		}
		if state == "ok" {
			s.log.Info("sensor healthy", "was", prev)
		} else {
			s.log.Warn("sensor unhealthy", "state", state, "was", prev, "err", err)
		}
	}
	h.OK = state == "ok"
	if consecutive >= 0 {
		h.ConsecutiveErrors = consecutive
	}
	if err != nil {
		h.LastError = err.Error()
	}
}

// read performs one operation on the sensor, inline: a hop to another
// goroutine per read costs more CPU than the read itself (measured: the
// agent used twice the CPU). The watchdog reports a read that does not
// return; a read that returned after ReadTimeout is discarded as errStuck.
func (s *Sampler) read(o op, fr FixedReader, f *hw.Fixed, e *physic.Env) readResult {
	var r readResult
	start := time.Now()
	s.readStart.Store(start.UnixNano())
	switch {
	case o == opReinit:
		r.err = s.cfg.Sensor.Reinit()
	case fr != nil:
		if r.err = fr.ReadFixed(f); r.err == nil {
			r.temp, r.press, r.hum = f.Temp, f.Press, f.Hum
		}
	default:
		if r.err = s.cfg.Sensor.Sense(e); r.err == nil {
			r.temp, r.press, r.hum = FromEnv(e)
		}
	}
	s.readStart.Store(0)
	if time.Since(start) > s.cfg.ReadTimeout {
		r.err = errStuck
		if s.flagged.Load() != start.UnixNano() {
			s.timeouts.Add(1) // returned before the watchdog saw it
		}
	}
	return r
}

// watchdog marks the sensor stuck while a read has been running for longer
// than ReadTimeout (measured on the real clock), once per such read.
func (s *Sampler) watchdog(done <-chan struct{}) {
	period := max(s.cfg.ReadTimeout/2, 5*time.Millisecond)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			start := s.readStart.Load()
			if start == 0 || start == s.flagged.Load() || now.UnixNano()-start < int64(s.cfg.ReadTimeout) {
				continue
			}
			s.flagged.Store(start)
			s.timeouts.Add(1)
			s.setHealth("stuck", errStuck, -1)
		}
	}
}

// maxBackoff caps the wait between retries of a failing sensor.
const maxBackoff = time.Second

var errStuck = errors.New("sensor read did not return within the read timeout (stuck bus?)")

// Run samples until ctx ends, then emits the partial batch (wire.FlagLast: the
// boot's stream ends with it; nothing is emitted if it is empty), closes Batches
// and returns nil. Reads are not interruptible: if the bus is stuck when
// ctx ends, Run returns when the read does (the caller bounds its wait).
func (s *Sampler) Run(ctx context.Context) error {
	done := make(chan struct{})
	defer close(done)
	go s.watchdog(done)
	defer close(s.out)

	clk := s.cfg.Clock
	fr, _ := s.cfg.Sensor.(FixedReader)
	if s.cfg.DriverSense {
		fr = nil
	}
	var fx hw.Fixed
	var env physic.Env
	do := func(o op) (readResult, error) {
		if err := ctx.Err(); err != nil {
			return readResult{}, err
		}
		return s.read(o, fr, &fx, &env), nil
	}

	var (
		batch      *wire.Batch
		batchIdx   int64 = -1
		prevT      int32
		prevP, prH uint32
		havePrev   bool
		lastChange time.Time
		lastReinit time.Time
		consec     int
		retry      = backoff.Backoff{Min: 10 * time.Millisecond, Max: maxBackoff} // doubling, no jitter
		retryAt    time.Time
		needReinit bool
		frozen     bool
	)
	emit := func(final bool) {
		if batch == nil || len(batch.Readings) == 0 {
			return
		}
		s.batches.Add(1)
		if final {
			// The boot's stream ends here (a clean stop): the collector
			// finalises the device's windows once it has every batch up
			// to this one.
			batch.Flags |= wire.FlagLast
			// The consumer drains Batches until it is closed.
			s.out <- batch
			batch = nil
			return
		}
		select {
		case s.out <- batch:
		default:
			s.droppedBatches.Add(1)
			s.droppedRdg.Add(int64(len(batch.Readings)))
			s.log.Warn("batch consumer is not keeping up; dropping a batch", "readings", len(batch.Readings), "seq", batch.Seq)
			s.Release(batch)
		}
		batch = nil
	}
	var seq uint64
	stepped := false // the wall clock stepped since the previous batch
	startBatch := func(now time.Time) {
		batch = s.pool.Get().(*wire.Batch)
		seq++
		*batch = wire.Batch{
			DeviceID: s.cfg.DeviceID, BootID: s.cfg.BootID, Seq: seq,
			IntervalUS:   uint32(s.interval / time.Microsecond),
			MonoOffsetUS: s.cfg.WallMinusMono(),
			Readings:     batch.Readings[:0],
		}
		if s.cfg.ClockSynced() {
			batch.Flags |= wire.FlagClockSynced
		}
		if stepped {
			batch.Flags |= wire.FlagClockStepped
			stepped = false
		}
		if s.cfg.NoHumidity {
			batch.Flags |= wire.FlagNoHumidity
		}
	}
	fail := func(now time.Time, err error) {
		consec++
		retryAt = now.Add(retry.Next())
		if consec >= 5 {
			needReinit = true
		}
		s.setHealth("errors", err, consec)
	}

	start := clk.Now()
	// phase is the number of ticks the first batch lacks when batches are
	// aligned: the tick grid starts at the first tick time on or after
	// start that is a whole number of intervals past a batch boundary.
	var phase int64
	if s.cfg.AlignBatches {
		into := start.Sub(start.Truncate(s.cfg.BatchInterval))
		k := int64((into + s.interval - 1) / s.interval)
		start = start.Add(time.Duration(k)*s.interval - into) // Add keeps the monotonic reading
		phase = k % s.perBatch
	}
	// The monotonic clock at start, µs: a tick's due time on it is
	// startMono + (due − start), whatever the wall clock does.
	startMono := start.UnixMicro() - s.cfg.WallMinusMono()
	lastOffset := int64(math.MinInt64)
	lastChange = start
	var i int64
	for {
		due := start.Add(time.Duration(i) * s.interval)
		if err := clock.SleepUntil(ctx, clk, due); err != nil {
			break
		}
		now := clk.Now()
		late := now.Sub(due)
		if late >= s.interval {
			skip := int64(late / s.interval)
			i += skip
			s.missed.Add(skip)
			due = start.Add(time.Duration(i) * s.interval)
			late = now.Sub(due)
		}
		s.lateness.Observe(late)
		if s.cfg.LatenessObserver != nil {
			s.cfg.LatenessObserver.Observe(late.Seconds())
		}
		s.ticks.Add(1)
		tick := i
		i++

		if bi := (tick + phase) / s.perBatch; bi != batchIdx {
			emit(false)
			batchIdx = bi
		}
		if now.Before(retryAt) {
			continue
		}
		if needReinit || (frozen && now.Sub(lastReinit) >= s.cfg.FrozenAfter) {
			lastReinit = now
			s.reinits.Add(1)
			r, err := do(opReinit)
			if err != nil {
				break
			}
			if r.err != nil {
				s.reinitErrs.Add(1)
				consec++
				needReinit = true // don't read on with a device that failed to initialise
				retryAt = clk.Now().Add(retry.Next())
				state := "reinit-failed"
				if errors.Is(r.err, errStuck) {
					state = "stuck"
				}
				s.setHealth(state, fmt.Errorf("re-initialising the sensor: %w", r.err), consec)
				continue
			}
			s.log.Info("sensor re-initialised", "frozen", frozen)
			needReinit = false
			// The data registers hold reset values until the first conversion.
			retryAt = clk.Now().Add(s.cfg.Settle)
			continue
		}
		r, err := do(opSense)
		if err != nil {
			break
		}
		if r.err != nil {
			if errors.Is(r.err, hw.ErrNotReady) {
				s.notReady.Add(1)
				// Configured, first conversion not done yet: nothing to record.
				// A sensor that never converts is as good as frozen.
				if now.Sub(lastChange) >= s.cfg.FrozenAfter {
					if !frozen {
						frozen = true
						lastReinit = now.Add(-s.cfg.FrozenAfter / 2)
					}
					s.setHealth("frozen", fmt.Errorf("no conversion for %v: %w", now.Sub(lastChange).Round(time.Millisecond), r.err), 0)
				}
				continue
			}
			s.readErrs.Add(1)
			switch {
			case errors.Is(r.err, errStuck):
				consec++
				s.setHealth("stuck", r.err, consec)
			case errors.Is(r.err, hw.ErrSensorReset):
				needReinit = true
				s.setHealth("errors", r.err, consec+1)
			default:
				fail(now, r.err)
			}
			continue
		}
		t, p, h := r.temp, r.press, r.hum
		if s.cfg.NoHumidity {
			h = 0
		}
		if t < wire.MinTemp || t > wire.MaxTemp || p < wire.MinPress || p > wire.MaxPress || h > wire.MaxHum {
			s.oorCnt.Add(1)
			fail(now, fmt.Errorf("reading out of the sensor's range: %.2f °C, %.0f Pa, %.2f %%RH",
				float64(t)/100, float64(p)/256, float64(h)/1024))
			continue
		}
		consec = 0
		retry.Reset()
		fresh := !havePrev || t != prevT || p != prevP || h != prH
		prevT, prevP, prH, havePrev = t, p, h, true
		if fresh {
			s.fresh.Add(1)
			lastChange = now
			if frozen {
				frozen = false
			}
		} else {
			s.repeated.Add(1)
			if !frozen && now.Sub(lastChange) >= s.cfg.FrozenAfter {
				frozen = true
				lastReinit = now.Add(-s.cfg.FrozenAfter / 2) // first re-init after half the period
			}
		}
		if frozen {
			s.setHealth("frozen", fmt.Errorf("sensor values unchanged for %v", now.Sub(lastChange).Round(time.Millisecond)), 0)
		} else {
			s.setHealth("ok", nil, 0)
		}
		off := s.cfg.WallMinusMono()
		if lastOffset != math.MinInt64 && (off-lastOffset > ClockStepUS || lastOffset-off > ClockStepUS) {
			// The wall clock stepped: cut the batch here.
			s.clockSteps.Add(1)
			s.log.Info("wall clock stepped; starting a new batch", "step", time.Duration(off-lastOffset)*time.Microsecond)
			emit(false)
			stepped = true
		}
		lastOffset = off
		if batch == nil {
			startBatch(now)
			batch.MonoOffsetUS = off
		}
		ts := startMono + int64(due.Sub(start)/time.Microsecond) + batch.MonoOffsetUS
		batch.Readings = append(batch.Readings, wire.Reading{TimeUS: ts, Temp: t, Press: p, Hum: h, Fresh: fresh})
		s.readings.Add(1)
	}
	emit(true)
	return nil
}
