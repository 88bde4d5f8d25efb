package bronzeapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/internal/clock"
)

// StateDir holds every bronze-appending collector's state.
const StateDir = schema.Checkpoints + "bronze/"

// AppIDPrefix starts the Delta txn app id of each bronze-appending collector.
const AppIDPrefix = "pilake-bronze-"

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// ValidName reports whether name can name a bronze-appending collector:
// 1 to 40 lower-case letters, digits and '-', not starting with '-'.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Options configure an Appender. Zero values get the defaults in brackets.
type Options struct {
	// Name is this collector's name, unique among the collectors of a lake
	// and the same across its restarts (its txn app id is AppIDPrefix+Name).
	Name string
	// Instance is this process's Lander instance (landing.Options.Instance).
	Instance string
	// CommitInterval is the longest time between bronze commits [2s].
	CommitInterval time.Duration
	// MaxRows commits early when this many readings wait [1<<20].
	MaxRows int
	// CompatibleBronze: see stages.Options.CompatibleBronze.
	CompatibleBronze bool
	// MaxSkew: readings captured further than this from their batch's
	// receive time are quarantined (kind "skew", with the reason), as the
	// stage collector does (stages.Options.MaxSkew; --max-skew); <= 0: off.
	MaxSkew time.Duration
	// MaxAhead: readings captured further than this after their batch's
	// receive time are quarantined (kind "skew"), so a clock ahead of time
	// puts nothing in bronze that would move Databricks' watermark
	// (--max-ahead); <= 0: off. Unlike the stage collector, this mode does
	// not re-base an unsynchronised clock from the batch's monotonic offset:
	// such readings are quarantined too.
	MaxAhead time.Duration
	// Release, if set, gets each batch back once it is in bronze or dropped.
	Release func(*wire.Batch)
	Logger  *slog.Logger
	// Clock tells the time (commit times, the skew checks) [clock.Real].
	Clock clock.Clock
}

// Stats are an Appender's counters, what an operator watches (the
// collector exports them to Prometheus in this mode).
type Stats struct {
	Batches, Readings int64 // committed to bronze
	Duplicates        int64 // submitted batches in bronze or queued already (dropped)
	Epochs            int64 // bronze commits
	Recovered         int64 // batches an earlier instance landed, appended at start
	Quarantined       int64 // readings quarantined (skew; Ahead included)
	Ahead             int64 // of which: captured more than MaxAhead after their receive time
	CommitRetries     int64 // failed commit attempts (retried)
	Conflicts         int64 // commits that lost a race to another writer and were retried at the next version
	ChecksumErrors    int64 // version checksum files (.crc) not written (their commits stand)
	LastCommit        time.Time
	// CommitSeconds is the latency of bronze commits (writing the file and
	// state, then the Delta commit, retries included), as a histogram.
	CommitSeconds Histogram
}

// Histogram counts observations into cumulative buckets (Prometheus's shape).
type Histogram struct {
	Bounds []float64 // upper bounds, ascending
	Counts []uint64  // Counts[i]: observations <= Bounds[i]
	Count  uint64
	Sum    float64
}

// commitBounds are the commit latency buckets, in seconds.
var commitBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

func (h *Histogram) observe(v float64) {
	if h.Bounds == nil {
		h.Bounds, h.Counts = commitBounds, make([]uint64, len(commitBounds))
	}
	for i, b := range h.Bounds {
		if v <= b {
			h.Counts[i]++
		}
	}
	h.Count++
	h.Sum += v
}

// Appender appends landed batches to bronze.
type Appender struct {
	l     lake.Lake
	opts  Options
	appID string
	log   *slog.Logger
	tbl   *delta.Table

	in        chan landing.Landed
	epoch     int64
	committed map[string]landing.SeqRanges // stream "device/boot" → seqs in bronze as of epoch
	seen      map[string]landing.SeqRanges // committed, plus what is queued
	queue     []queued
	rows      int
	pending   *attempt // a commit that failed, retried as it was before anything else
	mu        sync.Mutex
	stats     Stats     // guarded by mu
	started   time.Time // when the commit being tried was first prepared
}

// queued is a batch waiting for bronze: the readings that go there, and
// those the skew check quarantines, with the reason.
type queued struct {
	landing.Landed
	good, bad []wire.Reading
	ahead     int
	reason    string
}

// attempt is one epoch's commit: retried with the same actions and id
// until it lands (package delta recognises an earlier try that landed).
type attempt struct {
	e       int64
	actions []delta.Action
	n       int                          // queue entries it covers
	landed  map[string]landing.SeqRanges // committed after it
}

// ErrNameTaken means another collector commits bronze under this name.
var ErrNameTaken = errors.New("another collector appends bronze under this name")

// New checks opts and returns an Appender; call Start before ingest.
func New(l lake.Lake, opts Options) (*Appender, error) {
	if !ValidName(opts.Name) {
		return nil, fmt.Errorf("bronze append: name %q: want 1-40 of a-z, 0-9 and -", opts.Name)
	}
	if !landing.ValidInstance(opts.Instance) {
		return nil, fmt.Errorf("bronze append: instance %q is not a Lander instance", opts.Instance)
	}
	if opts.CommitInterval <= 0 {
		opts.CommitInterval = 2 * time.Second
	}
	if opts.MaxRows <= 0 {
		opts.MaxRows = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real
	}
	return &Appender{l: l, opts: opts, appID: AppIDPrefix + opts.Name, log: opts.Logger.With("bronze_append", opts.Name),
		in: make(chan landing.Landed, 256), committed: map[string]landing.SeqRanges{}, seen: map[string]landing.SeqRanges{}}, nil
}

// AppID returns the Delta txn application id this collector commits under.
func (a *Appender) AppID() string { return a.appID }

// Stats returns the counters; safe while Run runs.
func (a *Appender) Stats() Stats {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.stats
	s.CommitSeconds.Bounds = append([]float64(nil), s.CommitSeconds.Bounds...)
	s.CommitSeconds.Counts = append([]uint64(nil), s.CommitSeconds.Counts...)
	return s
}

// count updates the counters under the lock.
func (a *Appender) count(f func(*Stats)) {
	a.mu.Lock()
	f(&a.stats)
	a.mu.Unlock()
}

func (a *Appender) dir() string { return StateDir + a.opts.Name + "/" }

func (a *Appender) stateName(e int64) string { return fmt.Sprintf("%s%020d.json", a.dir(), e) }

type state struct {
	Epoch  int64                        `json:"epoch"`
	Landed map[string]landing.SeqRanges `json:"landed"`
}

// Start opens bronze, registers this process's Lander instance, loads the
// state of the last committed epoch and appends what this collector's
// earlier instances landed but never got into bronze. Ingest may start
// after it returns.
func (a *Appender) Start(ctx context.Context) error {
	var err error
	a.tbl, err = delta.Open[schema.BronzeRow](ctx, a.l, schema.Bronze, delta.Options{Logger: a.log,
		ChecksumFailed: func(error) { a.count(func(s *Stats) { s.ChecksumErrors++ }) }})
	if err != nil {
		return fmt.Errorf("bronze append: %w", err)
	}
	if err := a.l.Put(ctx, a.dir()+"instances/"+a.opts.Instance, []byte(a.opts.Clock.Now().UTC().Format(time.RFC3339Nano)+"\n")); err != nil {
		return fmt.Errorf("bronze append: registering instance: %w", err)
	}
	if e, ok := a.tbl.Snapshot().TxnVersion(a.appID); ok {
		data, err := a.l.Get(ctx, a.stateName(e))
		if err != nil {
			return fmt.Errorf("bronze append: loading state of epoch %d: %w", e, err)
		}
		var st state
		if err := json.Unmarshal(data, &st); err != nil || st.Epoch != e {
			return fmt.Errorf("bronze append: state of epoch %d unreadable (%v)", e, err)
		}
		for k, r := range st.Landed {
			if !r.Valid() {
				return fmt.Errorf("bronze append: state of epoch %d: bad ranges for %s", e, k)
			}
		}
		a.epoch = e
		if st.Landed != nil {
			a.committed, a.seen = st.Landed, clone(st.Landed)
		}
	}
	mine, err := a.instances(ctx, "instances/")
	if err != nil {
		return err
	}
	// Instances whose every segment a start before this one put in bronze.
	done, err := a.instances(ctx, "done/")
	if err != nil {
		return err
	}
	for inst := range done {
		delete(mine, inst)
	}
	delete(mine, a.opts.Instance)
	objs, err := a.l.List(ctx, landing.SegmentDir)
	if err != nil {
		return fmt.Errorf("bronze append: listing landing segments: %w", err)
	}
	for _, o := range objs {
		inst, _, ok := landing.ParseSegmentName(o.Name)
		if !ok || !mine[inst] {
			continue
		}
		data, err := a.l.Get(ctx, o.Name)
		if err != nil {
			return fmt.Errorf("bronze append: reading %s: %w", o.Name, err)
		}
		recs, err := landing.DecodeSegment(data)
		if err != nil && len(recs) == 0 {
			a.log.Warn("unreadable landing segment left to the stage collector's quarantine", "segment", o.Name, "err", err)
			continue
		}
		for _, r := range recs {
			b := &wire.Batch{}
			if wire.Decode(r.Payload, b) != nil {
				continue // the Lander decoded it before landing; damage is quarantined by the stages
			}
			if a.add(landing.Landed{Batch: b, ReceivedAt: r.ReceivedAt, Source: r.Source}) {
				a.count(func(s *Stats) { s.Recovered++ })
			}
		}
	}
	if n := a.Stats().Recovered; n > 0 {
		a.log.Info("appending batches landed before a restart", "batches", n)
	}
	if err := a.commit(ctx); err != nil {
		return fmt.Errorf("bronze append: recovering: %w", err)
	}
	// Those instances are gone and all they landed is in bronze now: later
	// starts need not read their segments again.
	for inst := range mine {
		if err := a.l.Put(ctx, a.dir()+"done/"+inst, nil); err != nil {
			return fmt.Errorf("bronze append: %w", err)
		}
	}
	return nil
}

// instances lists this collector's Lander instances (sub "instances/"), or
// those done (sub "done/").
func (a *Appender) instances(ctx context.Context, sub string) (map[string]bool, error) {
	objs, err := a.l.List(ctx, a.dir()+sub)
	if err != nil {
		return nil, fmt.Errorf("bronze append: listing instances: %w", err)
	}
	out := map[string]bool{}
	for _, o := range objs {
		out[o.Name[strings.LastIndex(o.Name, "/")+1:]] = true
	}
	return out, nil
}

// AppendedInstances returns the Lander instances of every bronze-appending
// collector of the lake: their batches are in bronze already, so a stage
// collector must not take their segments in.
func AppendedInstances(ctx context.Context, l lake.Lake) (map[string]bool, error) {
	objs, err := l.List(ctx, StateDir)
	if err != nil {
		return nil, fmt.Errorf("listing bronze-appending collectors: %w", err)
	}
	out := map[string]bool{}
	for _, o := range objs {
		if i := strings.Index(o.Name, "/instances/"); i >= 0 {
			out[o.Name[i+len("/instances/"):]] = true
		}
	}
	return out, nil
}

// Submit hands over a landed batch (the Appender owns it afterwards).
func (a *Appender) Submit(ctx context.Context, b landing.Landed) error {
	select {
	case a.in <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// add queues b unless it is in bronze or queued already; it reports whether
// it queued it.
func (a *Appender) add(b landing.Landed) bool {
	key := streamKey(b.Batch)
	if a.seen[key].Has(b.Batch.Seq) {
		a.count(func(s *Stats) { s.Duplicates++ })
		if a.opts.Release != nil {
			a.opts.Release(b.Batch)
		}
		return false
	}
	a.seen[key] = a.seen[key].Add(b.Batch.Seq)
	q := a.checkSkew(b)
	a.queue = append(a.queue, q)
	a.rows += len(b.Batch.Readings)
	return true
}

// checkSkew splits b's readings into those for bronze and those the skew
// check quarantines: captured further than MaxSkew from the receive time,
// or more than MaxAhead after it (the stage collector's checks, and its
// reasons).
func (a *Appender) checkSkew(b landing.Landed) queued {
	q := queued{Landed: b, good: b.Batch.Readings}
	skew, ahead := a.opts.MaxSkew.Microseconds(), a.opts.MaxAhead.Microseconds()
	if skew <= 0 && ahead <= 0 {
		return q
	}
	recv := b.ReceivedAt.UnixMicro()
	nskew := 0
	for i, rd := range b.Batch.Readings {
		isSkew := skew > 0 && (rd.TimeUS > recv+skew || rd.TimeUS < recv-skew)
		isAhead := !isSkew && ahead > 0 && rd.TimeUS > recv+ahead
		if !isSkew && !isAhead {
			if q.bad != nil {
				q.good = append(q.good, rd)
			}
			continue
		}
		if q.bad == nil {
			q.good = append([]wire.Reading(nil), b.Batch.Readings[:i]...)
		}
		q.bad = append(q.bad, rd)
		if isSkew {
			nskew++
		} else {
			q.ahead++
		}
	}
	if q.bad == nil {
		return q
	}
	at := b.ReceivedAt.UTC().Format(time.RFC3339Nano)
	var why []string
	if nskew > 0 {
		why = append(why, fmt.Sprintf("%d readings captured more than %v from the receive time %s", nskew, a.opts.MaxSkew, at))
	}
	if q.ahead > 0 {
		why = append(why, fmt.Sprintf("%d readings captured more than %v ahead of the receive time %s (a clock ahead of time; refused so the device's watermark is not moved; bronze-append mode does not re-base unsynchronised clocks)",
			q.ahead, a.opts.MaxAhead, at))
	}
	q.reason = strings.Join(why, "; ")
	return q
}

// Run commits every CommitInterval (or at MaxRows readings) until ctx ends,
// then takes what was submitted and commits it. A failed commit is retried
// at the next tick; while MaxRows readings wait, nothing more is taken
// (Submit blocks, so the Lander and MQTT acknowledgements wait). It returns
// ErrNameTaken if another collector commits under this name.
func (a *Appender) Run(ctx context.Context) error {
	tick := time.NewTicker(a.opts.CommitInterval)
	defer tick.Stop()
	try := func(ctx context.Context) error {
		err := a.commit(ctx)
		if err != nil && !errors.Is(err, ErrNameTaken) {
			a.log.Warn("bronze commit failed; retrying", "err", err)
			return nil
		}
		return err
	}
	for {
		in := a.in
		if a.rows >= a.opts.MaxRows {
			in = nil // back-pressure until a commit goes through
		}
		select {
		case b := <-in:
			a.add(b)
			if a.rows >= a.opts.MaxRows {
				if err := try(ctx); err != nil {
					return err
				}
			}
		case <-tick.C:
			if err := try(ctx); err != nil {
				return err
			}
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			for {
				select {
				case b := <-a.in:
					a.add(b)
					continue
				default:
				}
				break
			}
			for a.pending != nil || len(a.queue) > 0 {
				if err := a.commit(sctx); err != nil {
					return fmt.Errorf("bronze append: final commit: %w", err)
				}
			}
			return nil
		}
	}
}

func streamKey(b *wire.Batch) string { return fmt.Sprintf("%s/%016x", b.DeviceID, b.BootID) }

func clone(m map[string]landing.SeqRanges) map[string]landing.SeqRanges {
	out := make(map[string]landing.SeqRanges, len(m))
	for k, r := range m {
		out[k] = append(landing.SeqRanges(nil), r...)
	}
	return out
}

// commit appends the queued batches to bronze as one file and one commit
// (first the failed attempt, if one waits, exactly as it was).
func (a *Appender) commit(ctx context.Context) error {
	if a.pending == nil {
		if len(a.queue) == 0 {
			return nil
		}
		a.started = a.opts.Clock.Now()
		p, err := a.prepare(ctx)
		if err != nil {
			a.count(func(s *Stats) { s.CommitRetries++ })
			return err
		}
		a.pending = p
	}
	p := a.pending
	// The id names this process's attempt: a retry of an attempt that did
	// land is recognised, another process's commit of the same epoch is not.
	conflicts := a.tbl.Conflicts()
	_, err := a.tbl.CommitID(ctx, p.actions, "WRITE", fmt.Sprintf("%s-%s-%d", a.appID, a.opts.Instance, p.e))
	lost := a.tbl.Conflicts() - conflicts
	if err != nil {
		a.count(func(s *Stats) { s.CommitRetries++; s.Conflicts += lost })
		if v, ok := a.tbl.Snapshot().TxnVersion(a.appID); errors.Is(err, delta.ErrConflict) && ok && v >= p.e {
			return fmt.Errorf("%w (%s committed epoch %d): %v", ErrNameTaken, a.appID, v, err)
		}
		return fmt.Errorf("committing bronze epoch %d: %w", p.e, err)
	}
	a.pending = nil
	a.epoch, a.committed = p.e, p.landed
	now := a.opts.Clock.Now()
	var batches, readings, bad, ahead int64
	for _, b := range a.queue[:p.n] {
		batches++
		readings += int64(len(b.good))
		bad += int64(len(b.bad))
		ahead += int64(b.ahead)
		a.rows -= len(b.Batch.Readings)
		if a.opts.Release != nil {
			a.opts.Release(b.Batch)
		}
	}
	a.count(func(s *Stats) {
		s.Epochs++
		s.Batches += batches
		s.Readings += readings
		s.Quarantined += bad
		s.Ahead += ahead
		s.Conflicts += lost
		s.LastCommit = now
		s.CommitSeconds.observe(now.Sub(a.started).Seconds())
	})
	a.queue = append(a.queue[:0], a.queue[p.n:]...)
	// the state of epoch e-2 is no longer needed (e-1 is kept for a look back)
	if p.e > 2 {
		_ = a.l.Delete(ctx, a.stateName(p.e-2))
	}
	return nil
}

// prepare writes the queue's bronze file and the state after it, and
// returns the commit that makes them the next epoch.
func (a *Appender) prepare(ctx context.Context) (*attempt, error) {
	bw := delta.NewBronzeWriter(a.opts.CompatibleBronze)
	landed := clone(a.committed)
	for _, b := range a.queue {
		if b.bad != nil {
			// Quarantined before the commit that marks the batch done;
			// writing it again after a failed attempt is harmless (same name).
			if err := a.quarantine(ctx, b); err != nil {
				return nil, err
			}
		}
		tmpl := schema.BronzeRow{Device: b.Batch.DeviceID, Boot: int64(b.Batch.BootID), Seq: int64(b.Batch.Seq),
			ReceivedAt: b.ReceivedAt.UnixMicro(), Source: b.Source}
		bw.WriteFlags(b.good, &tmpl, b.Batch.Flags)
		k := streamKey(b.Batch)
		landed[k] = landed[k].Add(b.Batch.Seq)
	}
	data, err := bw.Close()
	if err != nil {
		return nil, fmt.Errorf("encoding bronze: %w", err)
	}
	add, err := a.tbl.PutFile(ctx, data, bw.Stats(), nil)
	if err != nil {
		return nil, fmt.Errorf("writing bronze file: %w", err)
	}
	if err := a.tbl.SyncFiles(ctx); err != nil {
		return nil, fmt.Errorf("writing bronze file: %w", err)
	}
	e := a.epoch + 1
	js, err := json.Marshal(state{Epoch: e, Landed: landed})
	if err != nil {
		return nil, fmt.Errorf("encoding bronze append state: %w", err)
	}
	// Before the commit: recovery reads the state of the epoch bronze's txn names.
	if err := a.l.Put(ctx, a.stateName(e), js); err != nil {
		return nil, fmt.Errorf("writing bronze append state: %w", err)
	}
	actions := []delta.Action{{Add: &add}, {Txn: &delta.Txn{AppID: a.appID, Version: e, LastUpdated: a.opts.Clock.Now().UnixMilli()}}}
	return &attempt{e: e, actions: actions, n: len(a.queue), landed: landed}, nil
}

// quarantine stores the readings of b the skew check refused, with the
// reason, under _quarantine/ (kind "skew"), as JSON.
func (a *Appender) quarantine(ctx context.Context, b queued) error {
	data, err := landing.EncodeRefused(*b.Batch, b.bad)
	if err != nil {
		return fmt.Errorf("bronze append: %w", err)
	}
	rec := landing.Record{Reason: fmt.Sprintf("batch %s: %s", b.Batch.Key(), b.reason), Kind: landing.KindSkew, Source: b.Source, ReceivedAt: b.ReceivedAt}
	if err := landing.QuarantineRecord(ctx, a.l, data, rec); err != nil {
		return fmt.Errorf("bronze append: %w", err)
	}
	return nil
}
