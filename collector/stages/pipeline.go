package stages

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
)

// AppID is the Delta txn application id the pipeline commits epochs under.
const AppID = "pilake-stages"

// ErrClosed is returned by Submit after Run has returned.
var ErrClosed = errors.New("pipeline closed")

// Landed is a batch that is durable in landing/.
type Landed struct {
	// Name is the landing object holding the batch: a segment
	// (landing/-seg/...), or a legacy per-batch object, e.g.
	// landing/dev-1/00000000deadbeef/00000000000000000042.bin.
	Name string
	// Segment is the segment holding the batch, if it is in one, and
	// SegmentRecords the number of batches in it: once the pipeline has
	// processed that many of its batches, its checkpoints record the whole
	// segment as processed, and recovery does not read it again.
	Segment        string
	SegmentRecords int
	Batch          *wire.Batch // decoded and validated; owned by the pipeline after Submit
	ReceivedAt     time.Time
	Source         string // "mqtt" or "iothub"
}

// Stats are the pipeline's counters since New.
type Stats struct {
	Batches          int64 // batches folded into bronze
	Readings         int64 // readings in bronze
	Duplicates       int64 // submitted batches already in bronze (ignored)
	Late             int64 // readings sent to silver_late
	Quarantined      int64 // readings quarantined (timestamp skew)
	ClockCorrected   int64 // batches re-based by the clock policy
	ClockRejected    int64 // batches quarantined by the clock policy (absurd offsets)
	Ahead            int64 // readings quarantined as ahead of their receive time (in Quarantined too)
	QuarantinedFiles int64 // landing objects quarantined (undecodable)
	SilverRows       int64
	GoldRows         int64
	Epochs           int64 // epochs committed
	CommitRetries    int64 // failed epoch commit attempts (lake errors)
	Compactions      int64 // files removed by compaction
	Vacuumed         int64 // data files deleted by vacuum
	LastCommit       time.Time
}

// Pipeline runs bronze, silver and gold over landed batches.
type Pipeline struct {
	l        lake.Lake
	opts     Options
	log      *slog.Logger
	instance string // random, names this process's commits (commitInfo.txnId)

	in      chan Landed
	done    chan struct{}
	ready   chan struct{}
	running atomic.Bool

	// Owned by Run's goroutine.
	tables map[string]*delta.Table
	f      *folder
	landed map[string]landing.SeqRanges
	clock  *clockPolicy
	// segments holds, per Lander instance, the counters of the segments
	// whose every batch is processed; segSeen counts the batches processed
	// of segments not complete yet.
	segments map[string]landing.SeqRanges
	segSeen  map[string]*segProgress
	epochN   int64
	bw       *delta.BronzeWriter // the first epoch's, until the encoder takes it
	jobs     chan bronzeJob
	rows     int64
	batches  int64
	quar     []quarantined
	good     []wire.Reading
	live     schema.LiveUpdate
	dirty    bool

	commits   chan *epoch
	commitErr chan error
	stopping  func()          // starts the shutdown clock for commits
	runDone   <-chan struct{} // Run's ctx.Done()

	// Owned by the committer (and recover, before it starts): gold rows
	// staged since the last gold commit.
	goldStaged []string
	goldRows   []schema.GoldRow
	goldDue    time.Time

	devStateSize int // size of the last encoded devices' state
	compactions  int // compaction rounds (committer)

	mu         sync.Mutex
	stats      Stats
	watermarks map[string]int64
}

// New returns a pipeline writing the tables of l. Call Run to start it.
func New(l lake.Lake, opts Options) (*Pipeline, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("configuring stages: %w", err)
	}
	opts = opts.withDefaults()
	return &Pipeline{
		l: l, opts: opts, log: opts.Logger.With(slog.String("component", "stages")), instance: newInstanceID(),
		clock: newClockPolicy(opts.MaxAhead, opts.MaxSkew, opts.MaxSkew < 0),
		in:    make(chan Landed, opts.QueueLen), done: make(chan struct{}), ready: make(chan struct{}),
		watermarks: map[string]int64{},
	}, nil
}

// Submit hands a batch that is already durable in landing/ to the stages. It
// blocks while the pipeline is behind (back-pressure) and returns ctx.Err()
// if ctx ends first, or ErrClosed once Run has returned.
func (p *Pipeline) Submit(ctx context.Context, b Landed) error {
	if b.Batch == nil {
		return errors.New("submitting batch: nil batch")
	}
	if !wire.ValidDeviceID(b.Batch.DeviceID) || b.Batch.Seq == 0 {
		return fmt.Errorf("submitting batch %q: %w: not validated", b.Name, wire.ErrInvalid)
	}
	select {
	case <-p.done:
		return ErrClosed
	default:
	}
	select {
	case p.in <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-p.done:
		return ErrClosed
	}
}

// Ready is closed once Run has recovered and landed into bronze what it found
// in landing/ at start, and processes submitted batches. Start ingest after
// it (or after Done): batches submitted earlier wait in a queue of QueueLen
// while the start-up scan reads landing/, holding their senders meanwhile.
func (p *Pipeline) Ready() <-chan struct{} { return p.ready }

// Done is closed when Run has returned.
func (p *Pipeline) Done() <-chan struct{} { return p.done }

// Queued returns how many submitted batches wait to be processed.
func (p *Pipeline) Queued() int { return len(p.in) }

// Stats returns a snapshot of the counters.
func (p *Pipeline) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Watermarks returns each device's watermark (µs since the epoch) as of the
// last epoch.
func (p *Pipeline) Watermarks() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.watermarks))
	for k, v := range p.watermarks {
		out[k] = v
	}
	return out
}

func (p *Pipeline) count(fn func(*Stats)) {
	p.mu.Lock()
	fn(&p.stats)
	p.mu.Unlock()
}

// Run recovers (completes the last epoch's commits, then lands into bronze
// every landing object not yet in it — exactly once), then processes
// submitted batches until ctx is done, then processes what is queued,
// finalises every open window, commits, and returns. It returns nil after a
// clean shutdown, or the error that stopped it (a lake that stayed
// unavailable past ShutdownTimeout, or another writer's conflicting commit).
func (p *Pipeline) Run(ctx context.Context) (err error) {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("running stages: Run called twice")
	}
	defer close(p.done)
	// Recovery must complete even if ctx ends meanwhile (a clean shutdown
	// needs the state): it gets ShutdownTimeout after ctx ends.
	rctx, rcancel := detach(ctx, p.opts.ShutdownTimeout)
	err = p.retry(rctx, "recovering", p.recover)
	rcancel()
	if err != nil {
		return err
	}
	// Bronze rows are built and encoded on their own goroutine, so folding
	// (and the live feed) runs beside the Parquet encoding.
	p.jobs = make(chan bronzeJob, 256)
	encoderDone := make(chan struct{})
	go func(bw *delta.BronzeWriter) {
		defer close(encoderDone)
		encodeBronze(p.jobs, bw, p.opts.Release)
	}(p.bw)
	p.bw = nil
	commitCtx, cancelCommit := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCommit()
	p.commits = make(chan *epoch, p.opts.MaxPendingEpochs)
	p.commitErr = make(chan error, 1)
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		p.committer(commitCtx)
	}()
	// Once stopping, commits get ShutdownTimeout in all; then the committer
	// gives up (and a cut waiting for it returns its error).
	var stopOnce sync.Once
	stopping := func() {
		stopOnce.Do(func() {
			t := time.AfterFunc(p.opts.ShutdownTimeout, cancelCommit)
			context.AfterFunc(commitCtx, func() { t.Stop() })
		})
	}
	p.stopping, p.runDone = stopping, ctx.Done()
	finish := func(err error) error {
		close(p.jobs)
		<-encoderDone
		close(p.commits)
		stopping()
		<-committerDone
		select {
		case cerr := <-p.commitErr:
			err = errors.Join(err, cerr)
		default:
		}
		return err
	}

	if err := p.retry(ctx, "scanning landing", p.scanLanding); err != nil && ctx.Err() == nil {
		return finish(err)
	}
	close(p.ready)
	ticker := time.NewTicker(p.opts.CommitInterval)
	defer ticker.Stop()
	var scan <-chan time.Time // other collectors' recent segments
	if p.opts.ScanInterval > 0 {
		t := time.NewTicker(p.opts.ScanInterval)
		defer t.Stop()
		scan = t.C
	}
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case b := <-p.in:
			p.process(b)
			if p.rows >= int64(p.opts.MaxEpochRows) {
				if err := p.cutEpoch(); err != nil {
					return finish(err)
				}
			}
		case <-scan:
			if err := p.scanRecent(ctx); err != nil && ctx.Err() == nil {
				p.log.Warn("scanning landing for other collectors' segments", slog.Any("error", err))
			}
			if p.rows >= int64(p.opts.MaxEpochRows) {
				if err := p.cutEpoch(); err != nil {
					return finish(err)
				}
			}
		case <-ticker.C:
			if p.dirty {
				if err := p.cutEpoch(); err != nil {
					return finish(err)
				}
			}
		case err := <-p.commitErr:
			p.commitErr <- err
			return finish(nil)
		}
	}
	// Clean shutdown: take what is queued, what is landed but was never
	// submitted, close every window, commit.
	stopping()
	for drained := false; !drained; {
		select {
		case b := <-p.in:
			p.process(b)
			if p.rows >= int64(p.opts.MaxEpochRows) {
				if err := p.cutEpoch(); err != nil {
					return finish(err)
				}
			}
		default:
			drained = true
		}
	}
	if !p.opts.SkipShutdownScan {
		// At most half the shutdown budget: the final commit needs the rest.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.ShutdownTimeout/2)
		err := p.scanLanding(sctx)
		cancel()
		if err != nil {
			p.log.Warn("scanning landing at shutdown", slog.Any("error", err))
		}
	}
	p.f.closeAll()
	p.dirty = true
	if err := p.cut(true); err != nil {
		return finish(err)
	}
	return finish(nil)
}

// process folds one landed batch into the current epoch.
func (p *Pipeline) process(b Landed) {
	if b.Segment != "" {
		p.segmentRecord(b.Segment, b.SegmentRecords)
	}
	stream := batchStream(b.Batch)
	set := p.landed[stream]
	if set.Has(b.Batch.Seq) {
		p.count(func(s *Stats) { s.Duplicates++ })
		p.opts.Release(b.Batch)
		return
	}
	p.landed[stream] = set.Add(b.Batch.Seq)
	p.dirty = true
	recv := b.ReceivedAt.UnixMicro()
	src := b.Source
	if src == "" {
		src = "unknown"
	}
	good := b.Batch.Readings
	var bad []wire.Reading
	// Clock policy: re-base a wrong clock from the batch's monotonic offset.
	v := p.clock.correct(b.Batch, recv)
	switch {
	case v.reject != "":
		bad, good = b.Batch.Readings, nil
		p.quar = append(p.quar, quarantined{name: b.Name, batch: *b.Batch, readings: bad, recv: b.ReceivedAt, source: src, reason: v.reject})
		p.count(func(s *Stats) { s.ClockRejected++ })
	case v.shiftUS != 0:
		p.count(func(s *Stats) { s.ClockCorrected++ })
	}
	// Skew check, and no reading ahead of the receive time by more than
	// MaxAhead: one batch cannot move the device's watermark ahead of time.
	if bad == nil && (p.opts.MaxSkew > 0 || p.clock.maxAhead > 0) {
		skew := p.opts.MaxSkew.Microseconds()
		ahead := int64(math.MaxInt64)
		if p.clock.maxAhead > 0 {
			ahead = recv + p.clock.maxAhead
		}
		nskew := 0
		p.good = p.good[:0]
		for _, r := range b.Batch.Readings {
			switch {
			case skew > 0 && (r.TimeUS > recv+skew || r.TimeUS < recv-skew):
				nskew++
				bad = append(bad, r)
			case r.TimeUS > ahead:
				bad = append(bad, r)
			default:
				p.good = append(p.good, r)
			}
		}
		if bad != nil {
			good = p.good
			var why []string
			if nskew > 0 {
				why = append(why, fmt.Sprintf("%d readings captured more than %v from the receive time %s", nskew, p.opts.MaxSkew, b.ReceivedAt.UTC().Format(time.RFC3339Nano)))
			}
			if n := len(bad) - nskew; n > 0 {
				why = append(why, fmt.Sprintf("%d readings captured more than %v ahead of the receive time %s (a clock ahead of time; refused so the device's watermark is not moved)",
					n, time.Duration(p.clock.maxAhead)*time.Microsecond, b.ReceivedAt.UTC().Format(time.RFC3339Nano)))
				p.count(func(s *Stats) { s.Ahead += int64(n) })
			}
			p.quar = append(p.quar, quarantined{name: b.Name, batch: *b.Batch, readings: bad, recv: b.ReceivedAt, source: src,
				reason: strings.Join(why, "; ")})
		}
	}
	tmpl := schema.BronzeRow{Device: b.Batch.DeviceID, Boot: int64(b.Batch.BootID), Seq: int64(b.Batch.Seq), ReceivedAt: recv, Source: src}
	var live *schema.LiveUpdate
	if p.opts.Live != nil && len(good) > 0 {
		live = &p.live
	}
	nlate := 0
	if len(good) > 0 {
		nlate = p.f.fold(b.Batch, good, tmpl, live)
	}
	p.rows += int64(len(good))
	p.batches++
	p.count(func(s *Stats) {
		s.Batches++
		s.Readings += int64(len(good))
		s.Late += int64(nlate)
		s.Quarantined += int64(len(bad))
	})
	if live != nil {
		live.PublishedUS = p.opts.Now().UnixMicro()
		p.opts.Live(*live)
	}
	// The encoder is the batch's last reader: it releases it.
	switch {
	case bad != nil: // held for quarantine (which copied the batch header): not released
		if len(good) > 0 {
			p.jobs <- bronzeJob{readings: slices.Clone(good), tmpl: tmpl} // p.good is scratch
		}
	case len(good) > 0:
		p.jobs <- bronzeJob{readings: good, tmpl: tmpl, batch: b.Batch}
	default:
		p.opts.Release(b.Batch)
	}
}

// segmentRecord counts one processed batch of segment name holding records.
func (p *Pipeline) segmentRecord(name string, records int) {
	sp := p.segSeen[name]
	if sp == nil {
		inst, n, ok := landing.ParseSegmentName(name)
		if !ok || p.segments[inst].Has(n) {
			return // processed already (by a recovery scan)
		}
		sp = &segProgress{inst: inst, n: n}
		p.segSeen[name] = sp
	}
	if sp.seen++; sp.seen >= records {
		p.segmentDone(name, sp.inst, sp.n)
	}
}

// segProgress counts the processed batches of a segment not complete yet.
type segProgress struct {
	inst string
	n    uint64
	seen int
}

// segmentDone records segment name (instance inst, counter n) as processed.
func (p *Pipeline) segmentDone(name, inst string, n uint64) {
	delete(p.segSeen, name)
	p.segments[inst] = p.segments[inst].Add(n)
	p.dirty = true
}

type quarantined struct {
	name     string
	batch    wire.Batch
	readings []wire.Reading
	raw      []byte // set for undecodable landing objects
	recv     time.Time
	source   string
	reason   string
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
	goldN    int64

	goldFlushed []string
	goldDone    bool
	bronzeData  []byte

	// Progress, so a retry resumes where the last attempt failed.
	adds     map[string][]delta.AddFile
	filesOK  bool
	cpOK     bool
	quarOK   bool
	tableOK  map[string]bool
	attempts int
}

func (p *Pipeline) cutEpoch() error { return p.cut(false) }

func (p *Pipeline) cut(final bool) error {
	p.epochN++
	landed, err := json.Marshal(p.landed)
	if err != nil {
		return fmt.Errorf("encoding stage state: %w", err)
	}
	segments, err := json.Marshal(p.segments)
	if err != nil {
		return fmt.Errorf("encoding stage state: %w", err)
	}
	devices := appendDevices(make([]byte, 0, p.devStateSize+p.devStateSize/8), p.f.devices)
	p.devStateSize = len(devices)
	// The encoder hands over this epoch's bronze file once it has written
	// every batch folded before the cut.
	reply := make(chan *delta.BronzeWriter, 1)
	p.jobs <- bronzeJob{cut: reply, next: delta.NewBronzeWriter(p.opts.CompatibleBronze)}
	bw := <-reply
	e := &epoch{n: p.epochN, bronze: bw, rows: p.rows, silver: p.f.silver, late: p.f.late, gold: p.f.gold,
		quar: p.quar, landed: landed, segments: segments, devices: devices, tableOK: map[string]bool{}, final: final, goldN: int64(len(p.f.gold))}
	p.f.silver, p.f.late, p.f.gold = nil, nil, nil
	p.quar = nil
	p.rows, p.batches, p.dirty = 0, 0, false
	wm := make(map[string]int64, len(p.f.devices))
	for id, d := range p.f.devices {
		if d.MaxEvent != math.MinInt64 {
			wm[id] = d.MaxEvent - p.f.lateness
		}
	}
	p.mu.Lock()
	p.watermarks = wm
	p.mu.Unlock()
	stop := p.runDone
	for {
		select {
		case p.commits <- e:
			return nil
		case err := <-p.commitErr:
			return err
		case <-stop:
			// Shutting down while the committer is behind (a lake outage):
			// give it ShutdownTimeout, then it gives up and reports.
			p.stopping()
			stop = nil
		}
	}
}

// detach returns a context that ignores ctx's end for timeout after it.
func detach(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	d, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(timeout, cancel) })
	return d, func() { stop(); cancel() }
}

// permanent marks errors that retrying cannot fix.
func permanent(err error) bool {
	return errors.Is(err, delta.ErrConflict) || errors.Is(err, delta.ErrUnsupported) ||
		errors.Is(err, delta.ErrCorruptLog) || errors.Is(err, errSettings) || errors.Is(err, errState)
}

// retry runs fn until it succeeds, fails permanently, fails 8 times (with
// backoff from RetryBackoff to 5 s: about 15 s of lake outage), or ctx ends.
func (p *Pipeline) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	backoff := p.opts.RetryBackoff
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || permanent(err) || attempt == 8 || ctx.Err() != nil {
			return err
		}
		p.log.Warn(what+" failed; retrying", slog.Any("error", err), slog.Int("attempt", attempt), slog.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
