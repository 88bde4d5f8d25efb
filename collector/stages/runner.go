package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
)

// runner owns the fold: it takes landed batches in order (submitted ones,
// and those the scans read), drops duplicates, quarantines skewed readings,
// folds the rest into windows and gold, publishes live updates, hands bronze
// rows to the encoder, and cuts epochs for the committer. Everything in it
// belongs to Run's goroutine, except segments, which the scanner reads
// under segMu.
type runner struct {
	l    lake.Lake // read by the start-up and shutdown scans
	opts Options
	log  *slog.Logger
	m    *meters

	in      <-chan landing.Landed
	scanned <-chan segmentObject // other collectors' segments, read by the scanner; nil without one

	f      *folder
	landed map[string]landing.SeqRanges
	clock  *clockPolicy
	// segments holds, per Lander instance, the counters of the segments
	// whose every batch is processed; segSeen counts the batches processed
	// of segments not complete yet.
	segMu    sync.Mutex // held to write segments, and by other goroutines to read it
	segments map[string]landing.SeqRanges
	segSeen  map[string]*segProgress
	epochN   int64
	jobs     chan bronzeJob // to the encoder
	rows     int64
	batches  int64
	quar     []quarantined
	good     []wire.Reading
	live     schema.LiveUpdate
	dirty    bool

	devStateSize int // size of the last encoded devices' state

	// landing is the lifecycle's position from the state (From: where the
	// start-up scan begins); landingHint, after a full scan of landing/,
	// the oldest segment hour it saw, for the committer (see lifecycle.go).
	landing      landingPositions
	landingHint  time.Time
	startScanned bool // the start-up scan is done

	// Last receive time (unix µs) per stream and per device, for forget.
	streamSeen map[string]int64
	devSeen    map[string]int64
	forgotAt   int64

	// ended holds the streams whose last batch (wire.FlagLast) came before
	// some batch before it did (see noteEnd).
	ended map[string]endedStream

	commits   chan<- *epoch
	commitErr chan error      // the committer's fatal error
	stopping  func()          // starts the shutdown clock for commits
	runDone   <-chan struct{} // Run's ctx.Done()
}

func newRunner(p *Pipeline) *runner {
	return &runner{
		l: p.l, opts: p.opts, log: p.log, m: &p.m, in: p.in,
		f:        newFolder(p.opts.Window.Microseconds(), p.opts.AllowedLateness.Microseconds(), p.opts.MovingAverages),
		landed:   map[string]landing.SeqRanges{},
		clock:    newClockPolicy(p.opts.MaxAhead, p.opts.MaxSkew, p.opts.MaxSkew < 0),
		segments: map[string]landing.SeqRanges{}, segSeen: map[string]*segProgress{},
		streamSeen: map[string]int64{}, devSeen: map[string]int64{}, ended: map[string]endedStream{},
	}
}

// run processes batches until ctx is done, then processes what is queued,
// what is landed but was never submitted, finalises every open window
// (unless Options.KeepOpenOnStop) and cuts the final epoch. It returns the error that stopped it, or nil; a
// committer's error is left in commitErr.
func (r *runner) run(ctx context.Context) error {
	ticker := time.NewTicker(r.opts.CommitInterval)
	defer ticker.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case b := <-r.in:
			r.process(b)
			if err := r.cutIfFull(); err != nil {
				return err
			}
		case so := <-r.scanned:
			if _, err := r.takeSegment(so.obj, so.data); err != nil {
				return err
			}
			if err := r.cutIfFull(); err != nil {
				return err
			}
		case <-ticker.C:
			if r.dirty {
				if err := r.cut(false); err != nil {
					return err
				}
			}
		case err := <-r.commitErr:
			r.commitErr <- err
			return nil
		}
	}
	// Clean shutdown: take what is queued, what is landed but was never
	// submitted, close every window (or keep the open ones in the state,
	// for the next start to go on with), commit.
	r.stopping()
	for drained := false; !drained; {
		select {
		case b := <-r.in:
			r.process(b)
			if err := r.cutIfFull(); err != nil {
				return err
			}
		default:
			drained = true
		}
	}
	if !r.opts.SkipShutdownScan {
		// At most half the shutdown budget: the final commit needs the rest.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.ShutdownTimeout/2)
		err := r.scanLanding(sctx)
		cancel()
		if err != nil {
			r.log.Warn("scanning landing at shutdown", slog.Any("err", err))
		}
	}
	if !r.opts.KeepOpenOnStop {
		r.f.closeAll()
	}
	r.dirty = true
	return r.cut(true)
}

// process folds one landed batch into the current epoch.
func (r *runner) process(b landing.Landed) {
	if b.SegmentRecords > 0 {
		r.segmentRecord(b.Name, b.SegmentRecords)
	}
	stream := batchStream(b.Batch)
	set := r.landed[stream]
	if set.Has(b.Batch.Seq) {
		r.m.count(func(s *Stats) { s.Duplicates++ })
		r.opts.Release(b.Batch)
		return
	}
	r.landed[stream] = set.Add(b.Batch.Seq)
	r.dirty = true
	recv := b.ReceivedAt.UnixMicro()
	if r.opts.ForgetAfter > 0 {
		r.streamSeen[stream] = recv
		r.devSeen[b.Batch.DeviceID] = recv
	}
	src := b.Source
	if src == "" {
		src = "unknown"
	}
	good := b.Batch.Readings
	var bad []wire.Reading
	// Clock policy: re-base a wrong clock from the batch's monotonic offset.
	v := r.clock.correct(b.Batch, recv)
	switch {
	case v.reject != "":
		bad, good = b.Batch.Readings, nil
		r.quar = append(r.quar, quarantined{name: b.Name, batch: *b.Batch, readings: bad, recv: b.ReceivedAt, source: src, reason: v.reject})
		r.m.count(func(s *Stats) { s.ClockRejected++ })
	case v.shiftUS != 0:
		r.m.count(func(s *Stats) { s.ClockCorrected++ })
	}
	// Skew check, and no reading ahead of the receive time by more than
	// MaxAhead: one batch cannot move the device's watermark ahead of time.
	if bad == nil && (r.opts.MaxSkew > 0 || r.clock.maxAhead > 0) {
		skew := r.opts.MaxSkew.Microseconds()
		ahead := int64(math.MaxInt64)
		if r.clock.maxAhead > 0 {
			ahead = recv + r.clock.maxAhead
		}
		nskew := 0
		r.good = r.good[:0]
		for _, rd := range b.Batch.Readings {
			switch {
			case skew > 0 && (rd.TimeUS > recv+skew || rd.TimeUS < recv-skew):
				nskew++
				bad = append(bad, rd)
			case rd.TimeUS > ahead:
				bad = append(bad, rd)
			default:
				r.good = append(r.good, rd)
			}
		}
		if bad != nil {
			good = r.good
			var why []string
			if nskew > 0 {
				why = append(why, fmt.Sprintf("%d readings captured more than %v from the receive time %s", nskew, r.opts.MaxSkew, b.ReceivedAt.UTC().Format(time.RFC3339Nano)))
			}
			if n := len(bad) - nskew; n > 0 {
				why = append(why, fmt.Sprintf("%d readings captured more than %v ahead of the receive time %s (a clock ahead of time; refused so the device's watermark is not moved)",
					n, time.Duration(r.clock.maxAhead)*time.Microsecond, b.ReceivedAt.UTC().Format(time.RFC3339Nano)))
				r.m.count(func(s *Stats) { s.Ahead += int64(n) })
			}
			r.quar = append(r.quar, quarantined{name: b.Name, batch: *b.Batch, readings: bad, recv: b.ReceivedAt, source: src,
				reason: strings.Join(why, "; ")})
		}
	}
	tmpl := schema.BronzeRow{Device: b.Batch.DeviceID, Boot: int64(b.Batch.BootID), Seq: int64(b.Batch.Seq), ReceivedAt: recv, Source: src}
	var live *schema.LiveUpdate
	if r.opts.Live != nil && len(good) > 0 {
		live = &r.live
	}
	nlate := 0
	if len(good) > 0 {
		nlate = r.f.fold(b.Batch, good, tmpl, live)
	}
	r.noteEnd(stream, b.Batch, good)
	r.rows += int64(len(good))
	r.batches++
	r.m.count(func(s *Stats) {
		s.Batches++
		s.Readings += int64(len(good))
		s.Late += int64(nlate)
		s.Quarantined += int64(len(bad))
	})
	if live != nil {
		live.PublishedUS = r.opts.Clock.Now().UnixMicro()
		r.opts.Live(*live)
	}
	// The encoder is the batch's last reader: it releases it.
	switch {
	case bad != nil: // held for quarantine (which copied the batch header): not released
		if len(good) > 0 {
			r.jobs <- bronzeJob{readings: slices.Clone(good), tmpl: tmpl, flags: b.Batch.Flags} // r.good is scratch
		}
	case len(good) > 0:
		r.jobs <- bronzeJob{readings: good, tmpl: tmpl, flags: b.Batch.Flags, batch: b.Batch}
	default:
		r.opts.Release(b.Batch)
	}
}

// segmentRecord counts one processed batch of segment name holding records.
func (r *runner) segmentRecord(name string, records int) {
	sp := r.segSeen[name]
	if sp == nil {
		inst, n, ok := landing.ParseSegmentName(name)
		if !ok || r.segments[inst].Has(n) {
			return // processed already (by a recovery scan)
		}
		sp = &segProgress{inst: inst, n: n}
		r.segSeen[name] = sp
	}
	if sp.seen++; sp.seen >= records {
		r.segmentDone(name, sp.inst, sp.n)
	}
}

// segProgress counts the processed batches of a segment not complete yet.
type segProgress struct {
	inst string
	n    uint64
	seen int
}

// segmentDone records segment name (instance inst, counter n) as processed.
func (r *runner) segmentDone(name, inst string, n uint64) {
	delete(r.segSeen, name)
	r.segMu.Lock()
	r.segments[inst] = r.segments[inst].Add(n)
	r.segMu.Unlock()
	r.dirty = true
}

// segmentProcessed reports whether segment n of Lander instance inst is
// processed whole. Other goroutines may call it.
func (r *runner) segmentProcessed(inst string, n uint64) bool {
	r.segMu.Lock()
	defer r.segMu.Unlock()
	return r.segments[inst].Has(n)
}

// epoch is the work of one epoch, handed to the committer.
type epoch struct {
	n        int64
	bronze   *delta.BronzeWriter
	rows     int64
	silver   []schema.SilverRow
	late     []schema.SilverLateRow
	gold     []schema.GoldRow
	quar     []quarantined
	landed   json.RawMessage
	segments json.RawMessage
	devices  []byte
	final    bool // the shutdown epoch: commit gold
	// landingHint: the landing lifecycle's first position, after a full scan.
	landingHint time.Time
	goldN       int64

	recovered bool // rebuilt by recovery from the epoch's state object

	// Results of the commit steps, so a step run again changes nothing.
	adds        map[string][]delta.AddFile
	goldFlushed []string
	goldDone    bool
	goldDirect  bool // gold due with nothing staged: e.gold is written as it is, not staged
	counted     bool
	maintained  bool

	step int // the cursor: the first of commitSteps not done
}

// cutIfFull cuts the epoch once it holds MaxEpochRows readings.
func (r *runner) cutIfFull() error {
	if r.rows >= int64(r.opts.MaxEpochRows) {
		return r.cut(false)
	}
	return nil
}

// cut ends the current epoch and hands it to the committer, waiting while
// MaxPendingEpochs wait for it (back-pressure).
func (r *runner) cut(final bool) error {
	r.forget()
	r.epochN++
	landed, err := json.Marshal(r.landed)
	if err != nil {
		return fmt.Errorf("encoding stage state: %w", err)
	}
	segments, err := json.Marshal(r.segments)
	if err != nil {
		return fmt.Errorf("encoding stage state: %w", err)
	}
	devices := appendDevices(make([]byte, 0, r.devStateSize+r.devStateSize/8), r.f.devices)
	r.devStateSize = len(devices)
	// The encoder hands over this epoch's bronze file once it has written
	// every batch folded before the cut.
	reply := make(chan *delta.BronzeWriter, 1)
	r.jobs <- bronzeJob{cut: reply, next: delta.NewBronzeWriter(r.opts.CompatibleBronze)}
	bw := <-reply
	e := &epoch{n: r.epochN, bronze: bw, rows: r.rows, silver: r.f.silver, late: r.f.late, gold: r.f.gold,
		quar: r.quar, landed: landed, segments: segments, devices: devices, adds: map[string][]delta.AddFile{}, final: final, goldN: int64(len(r.f.gold)),
		landingHint: r.landingHint}
	r.landingHint = time.Time{}
	r.f.silver, r.f.late, r.f.gold = nil, nil, nil
	r.quar = nil
	r.rows, r.batches, r.dirty = 0, 0, false
	wm := make(map[string]int64, len(r.f.devices))
	for id, d := range r.f.devices {
		if d.MaxEvent != math.MinInt64 {
			wm[id] = d.MaxEvent - r.f.lateness
		}
	}
	gaps := missingRanges(r.landed)
	r.m.mu.Lock()
	r.m.watermarks = wm
	r.m.gaps = gaps
	r.m.mu.Unlock()
	stop := r.runDone
	for {
		select {
		case r.commits <- e:
			return nil
		case err := <-r.commitErr:
			return err
		case <-stop:
			// Shutting down while the committer is behind (a lake outage):
			// give it ShutdownTimeout, then it gives up and reports.
			r.stopping()
			stop = nil
		}
	}
}
