package stages

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
)

// AppID is the Delta txn application id the pipeline commits epochs under.
const AppID = "pilake-stages"

// ErrClosed is returned by Submit after Run has returned.
var ErrClosed = errors.New("pipeline closed")

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
	ChecksumErrors   int64 // version checksum files (.crc) not written (their commits stand)
	Compactions      int64 // files removed by compaction
	Vacuumed         int64 // data files deleted by vacuum
	LandingExpired   int64 // landing segments deleted after LandingRetention
	DevicesForgotten int64 // devices unseen for ForgetAfter, dropped from state
	StreamsForgotten int64 // streams (device, boot) unseen for ForgetAfter, dropped from state
	StreamsEnded     int64 // streams whose last batch (wire.FlagLast) and every one before it were processed: their windows finalised
	// Refusals counts attempts refused because a table asks what pilake
	// cannot honour (a table feature, a constraint); Refusing is set while
	// the stages wait for that to change (see the log for which table and
	// why).
	Refusals       int64
	Refusing       bool
	CompactSkipped int64 // files compaction left alone (a deletion vector)
	LastCommit     time.Time
}

// Pipeline runs bronze, silver and gold over landed batches. It is the front
// of the goroutines Run starts, each with its own type and state: the runner
// (runner.go: dedup, skew check, fold, live feed, epoch cuts) on Run's
// goroutine after recovery (recovery.go) and the start-up scan (scan.go); the
// bronze encoder (encoder.go); the committer (committer.go: tables, gold,
// quarantine, the epoch's commit steps, the retry policy); and the periodic
// landing scanner (scan.go). They share only channels and the counters.
type Pipeline struct {
	l        lake.Lake
	opts     Options
	log      *slog.Logger
	instance string // random, names this process's commits (commitInfo.txnId)

	in      chan landing.Landed
	done    chan struct{}
	ready   chan struct{}
	running atomic.Bool

	m meters
}

// meters are the counters and watermarks the goroutines update and Stats
// and Watermarks read.
type meters struct {
	mu         sync.Mutex
	stats      Stats
	watermarks map[string]int64
	gaps       map[string][][2]uint64
}

func (m *meters) count(fn func(*Stats)) {
	m.mu.Lock()
	fn(&m.stats)
	m.mu.Unlock()
}

// New returns a pipeline writing the tables of l. Call Run to start it.
func New(l lake.Lake, opts Options) (*Pipeline, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("configuring stages: %w", err)
	}
	opts = opts.withDefaults()
	return &Pipeline{
		l: l, opts: opts, log: opts.Logger.With(slog.String("component", "stages")), instance: newInstanceID(),
		in: make(chan landing.Landed, opts.QueueLen), done: make(chan struct{}), ready: make(chan struct{}),
		m: meters{watermarks: map[string]int64{}},
	}, nil
}

// Submit hands a batch that is already durable in landing/ to the stages
// (it is a landing.Options.Submit). Once the stages have processed
// b.SegmentRecords batches of segment b.Name, their checkpoints record the
// whole segment as processed and recovery does not read it again; with
// SegmentRecords 0 the batch does not count toward its segment. Submit
// blocks while the pipeline is behind (back-pressure) and returns ctx.Err()
// if ctx ends first, or ErrClosed once Run has returned.
func (p *Pipeline) Submit(ctx context.Context, b landing.Landed) error {
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
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	return p.m.stats
}

// Gaps returns, as of the last epoch, the sequence numbers missing from each
// stream ("device/boot" in hex) between the first batch and the last the
// stages processed: batches that never reached bronze (not landed, or lost
// before landing), at most MaxGapRanges ranges per stream. Streams without
// gaps are absent.
func (p *Pipeline) Gaps() map[string][][2]uint64 {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	return maps.Clone(p.m.gaps)
}

// Watermarks returns each device's watermark (µs since the epoch) as of the
// last epoch.
func (p *Pipeline) Watermarks() map[string]int64 {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	return maps.Clone(p.m.watermarks)
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
	var r *runner
	var c *committer
	err = p.retry(rctx, "recovering", func(ctx context.Context) (err error) {
		r, c, err = p.recover(ctx)
		return err
	})
	rcancel()
	// A table that asks what pilake cannot honour: wait for it to change
	// (landing keeps every batch), without exiting into a crash loop.
	for refused(err) && ctx.Err() == nil {
		p.refusing(err)
		select {
		case <-ctx.Done():
		case <-time.After(p.opts.RefusedRetry):
		}
		if ctx.Err() != nil {
			break
		}
		rctx, rcancel := detach(ctx, p.opts.ShutdownTimeout)
		err = p.retry(rctx, "recovering", func(ctx context.Context) (err error) {
			r, c, err = p.recover(ctx)
			return err
		})
		rcancel()
	}
	if err == nil {
		p.m.count(func(s *Stats) { s.Refusing = false })
	}
	if refused(err) && ctx.Err() != nil {
		return nil // stopped while waiting out a refusal: a clean stop (landing/ keeps the batches)
	}
	if err != nil {
		return err
	}
	// Bronze rows are built and encoded on their own goroutine, so folding
	// (and the live feed) runs beside the Parquet encoding.
	r.jobs = make(chan bronzeJob, 256)
	encoderDone := make(chan struct{})
	go func() {
		defer close(encoderDone)
		encodeBronze(r.jobs, delta.NewBronzeWriter(p.opts.CompatibleBronze), p.opts.Release)
	}()
	commitCtx, cancelCommit := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelCommit()
	commits := make(chan *epoch, p.opts.MaxPendingEpochs)
	r.commits, r.commitErr = commits, make(chan error, 1)
	committerDone := make(chan struct{})
	go func() {
		defer close(committerDone)
		c.run(commitCtx, commits, r.commitErr)
	}()
	// Once stopping, commits get ShutdownTimeout in all; then the committer
	// gives up (and a cut waiting for it returns its error).
	var stopOnce sync.Once
	r.stopping = func() {
		stopOnce.Do(func() {
			t := time.AfterFunc(p.opts.ShutdownTimeout, cancelCommit)
			context.AfterFunc(commitCtx, func() { t.Stop() })
		})
	}
	r.runDone = ctx.Done()
	scanCtx, cancelScan := context.WithCancel(ctx)
	scannerDone := make(chan struct{})
	finish := func(err error) error {
		cancelScan()
		<-scannerDone
		close(r.jobs)
		<-encoderDone
		close(commits)
		r.stopping()
		<-committerDone
		select {
		case cerr := <-r.commitErr:
			err = errors.Join(err, cerr)
		default:
		}
		return err
	}

	if err := p.retry(ctx, "scanning landing", r.scanLanding); err != nil && ctx.Err() == nil {
		close(scannerDone)
		return finish(err)
	}
	// Other collectors' recent segments are fetched off the runner's
	// goroutine: it only folds what the scanner read.
	if p.opts.ScanInterval > 0 {
		scanned := make(chan segmentObject)
		r.scanned = scanned
		s := &scanner{l: p.l, opts: p.opts, log: p.log, done: r.segmentProcessed}
		go func() {
			defer close(scannerDone)
			s.run(scanCtx, scanned)
		}()
	} else {
		close(scannerDone)
	}
	close(p.ready)
	return finish(r.run(ctx))
}

// refused reports whether err means a table asks what pilake cannot
// honour: waiting, not exiting, is the answer.
func refused(err error) bool {
	return errors.Is(err, delta.ErrUnsupported) || errors.Is(err, delta.ErrConstraint)
}

// refusing logs a refusal and counts it.
func (p *Pipeline) refusing(err error) {
	p.m.count(func(s *Stats) { s.Refusals++; s.Refusing = true })
	p.log.Error("a table asks what pilake cannot honour; the stages wait (batches stay in landing/) and try again",
		slog.Any("err", err), slog.Duration("retry", p.opts.RefusedRetry))
}

// detach returns a context that ignores ctx's end for timeout after it.
func detach(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	d, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(timeout, cancel) })
	return d, func() { stop(); cancel() }
}

func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
