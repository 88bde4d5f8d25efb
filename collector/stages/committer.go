package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/internal/backoff"
)

// The tables after bronze, in commit order.
var derived = []string{schema.Silver, schema.SilverLate, schema.Gold}

// committer owns the tables and what is committed to them: it commits the
// epochs the runner cuts, in order, on its own goroutine — quarantine
// objects, data files, staged and committed gold, the stage state, the Delta
// commits, compaction — retrying each epoch until it succeeds or fails
// permanently. Recovery fills it before it starts.
type committer struct {
	l        lake.Lake
	opts     Options
	log      *slog.Logger
	m        *meters
	instance string // names this process's commits (commitInfo.txnId)

	tables map[string]*delta.Table

	// Gold rows staged since the last gold commit.
	goldStaged []string
	goldRows   []schema.GoldRow
	goldDue    time.Time
	// goldPartitioned: the lake's gold is partitioned by device (its old
	// layout): a file per device per commit, so commits are spaced by
	// goldInterval; otherwise gold is committed with every epoch.
	goldPartitioned bool
	goldInterval    time.Duration

	compactions int       // compaction rounds
	maintained  time.Time // last landing lifecycle round
	vacuumed    time.Time // last vacuum
	logCleaned  time.Time // last log cleanup
	// compactedHour: the last hour bucket whose closing started a round.
	compactedHour time.Time
	landing       landingPositions
	skipLogged    map[string]bool // files compaction stepped aside from, logged once
}

func newCommitter(p *Pipeline) *committer {
	return &committer{l: p.l, opts: p.opts, log: p.log, m: &p.m, instance: p.instance,
		tables: map[string]*delta.Table{}, compactedHour: p.opts.Clock.Now().Add(-compactionGrace).Truncate(time.Hour)}
}

// setGoldLayout sets how gold is written: partitioned by device (a lake
// made so before: commits every GoldInterval, default 1 min) or one
// time-ordered file per commit (every epoch unless GoldInterval says more).
func (c *committer) setGoldLayout(partitioned bool) {
	c.goldPartitioned = partitioned
	c.goldInterval = c.opts.GoldInterval
	if c.goldInterval == 0 && partitioned {
		c.goldInterval = time.Minute
	}
	c.goldDue = c.opts.Clock.Now().Add(c.goldInterval)
}

// goldIsDue reports whether gold is committed with e.
func (c *committer) goldIsDue(e *epoch) bool {
	return e.final || len(c.goldRows)+len(e.gold) >= c.opts.GoldMaxRows || !c.opts.Clock.Now().Before(c.goldDue)
}

// run commits epochs in order, retrying each until it succeeds or ctx ends;
// a permanent error, or ctx's end, goes to errc and the rest of commits is
// dropped.
func (c *committer) run(ctx context.Context, commits <-chan *epoch, errc chan<- error) {
	countRetry := func(error) { c.m.count(func(s *Stats) { s.CommitRetries++ }) }
	for e := range commits {
		for {
			err := retry(ctx, c.log, c.opts.RetryBackoff, "committing epoch", 0, countRetry,
				func(ctx context.Context) error { return c.commitEpoch(ctx, e) }, slog.Int64("epoch", e.n))
			if err == nil {
				c.m.count(func(s *Stats) { s.Refusing = false })
				break
			}
			if refused(err) && ctx.Err() == nil {
				// Another writer enabled what pilake cannot honour (or rows
				// break a constraint): wait and try again; the epoch's
				// batches stay in landing/.
				c.m.count(func(s *Stats) { s.Refusals++; s.Refusing = true })
				c.log.Error("a table asks what pilake cannot honour; the epoch waits (its batches stay in landing/) and is tried again",
					slog.Int64("epoch", e.n), slog.Any("err", err), slog.Duration("retry", c.opts.RefusedRetry))
				_ = backoff.Wait(ctx, c.opts.RefusedRetry)
				for _, t := range c.tables {
					_ = t.Refresh(ctx)
				}
				continue
			}
			errc <- fmt.Errorf("committing epoch %d: %w", e.n, err)
			for range commits {
			}
			return
		}
	}
}

// commitTable commits adds to t with the epoch's txn. Its commit id is the
// same on every retry within this process, so a commit whose write landed
// although the lake reported an error is recognised, not repeated; another
// writer's commit of the same application fails with delta.ErrConflict.
func (c *committer) commitTable(ctx context.Context, t *delta.Table, e int64, adds []delta.AddFile) error {
	actions := make([]delta.Action, 0, len(adds)+1)
	for i := range adds {
		actions = append(actions, delta.Action{Add: &adds[i]})
	}
	actions = append(actions, delta.Action{Txn: &delta.Txn{AppID: AppID, Version: e, LastUpdated: c.opts.Clock.Now().UnixMilli()}})
	_, err := t.CommitID(ctx, actions, "STREAMING UPDATE", fmt.Sprintf("%s-%s-%d", c.instance, t.Name(), e))
	return err
}

// commitStep is one step of an epoch's commit. Every step is idempotent:
// run again after it succeeded — a retry, or recovery after a crash — it
// leaves the lake and the committer as they are. The steps before "commit
// bronze" write only objects nothing references until bronze's commit (the
// epoch's atomic point) or that a redo overwrites; a crash before that point
// redoes the epoch from landing/, and the files it wrote are orphans that
// vacuum deletes. The commit steps skip a table whose txn version already
// is the epoch's.
type commitStep struct {
	name string
	run  func(c *committer, ctx context.Context, e *epoch) error
}

// commitSteps are an epoch's commit, in order. epoch.step is the cursor:
// the index of the first step not done. Within a process it survives
// failed attempts (a retry resumes at the step that failed); across a crash
// it is what the lake holds: the epoch's state object and the tables' txn
// versions, from which recovery resumes at stepCommitDerived.
var commitSteps = []commitStep{
	{"quarantine", (*committer).writeQuarantined},
	{"bronze file", (*committer).writeBronzeFile},
	{"silver file", (*committer).writeSilverFile},
	{"silver_late file", (*committer).writeLateFile},
	{"stage gold", (*committer).stageGold},
	{"gold files", (*committer).writeGoldFiles},
	{"sync files", (*committer).syncFiles},
	{"devices state", (*committer).writeDevices},
	{"epoch state", (*committer).writeEpochState},
	{"commit bronze", (*committer).commitBronze},
	{"commit silver", func(c *committer, ctx context.Context, e *epoch) error { return c.commitDerived(ctx, e, schema.Silver) }},
	{"commit silver_late", func(c *committer, ctx context.Context, e *epoch) error {
		return c.commitDerived(ctx, e, schema.SilverLate)
	}},
	{"commit gold", func(c *committer, ctx context.Context, e *epoch) error { return c.commitDerived(ctx, e, schema.Gold) }},
	{"delete staged gold", (*committer).deleteFlushedGold},
	{"delete old state", (*committer).deleteOldState},
	{"count", (*committer).countEpoch},
	{"maintenance", (*committer).maintain},
}

// Cursor positions recovery uses: the first step after the atomic point,
// and the first after the derived tables' commits.
var (
	stepCommitDerived = stepIndex("commit silver")
	stepAfterCommits  = stepIndex("delete staged gold")
)

func stepIndex(name string) int {
	for i, s := range commitSteps {
		if s.name == name {
			return i
		}
	}
	panic("stages: no commit step " + name)
}

// afterStep, if set (by tests), is called after each commit step succeeds.
var afterStep func(epoch int64, step string)

// commitEpoch runs e's commit steps from its cursor on, advancing the cursor
// past each step that succeeds.
func (c *committer) commitEpoch(ctx context.Context, e *epoch) error {
	return c.runSteps(ctx, e, len(commitSteps))
}

// runSteps runs e's steps from its cursor up to (not including) step end.
func (c *committer) runSteps(ctx context.Context, e *epoch, end int) error {
	for ; e.step < end; e.step++ {
		s := commitSteps[e.step]
		if err := s.run(c, ctx, e); err != nil {
			return err
		}
		if afterStep != nil {
			afterStep(e.n, s.name)
		}
	}
	return nil
}

func (c *committer) writeQuarantined(ctx context.Context, e *epoch) error {
	for _, q := range e.quar {
		if err := c.writeQuarantine(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

func (c *committer) writeBronzeFile(ctx context.Context, e *epoch) error {
	if _, done := e.adds[schema.Bronze]; done || e.rows == 0 {
		return nil
	}
	data, err := e.bronze.Close() // the same file again if called again
	if err != nil {
		return err
	}
	add, err := c.tables[schema.Bronze].PutFile(ctx, data, e.bronze.Stats(), nil)
	if err != nil {
		return err
	}
	e.adds[schema.Bronze] = []delta.AddFile{add}
	return nil
}

func (c *committer) writeSilverFile(ctx context.Context, e *epoch) error {
	return writeRows(ctx, c.tables[schema.Silver], e, e.silver)
}

func (c *committer) writeLateFile(ctx context.Context, e *epoch) error {
	return writeRows(ctx, c.tables[schema.SilverLate], e, e.late)
}

// writeRows writes rows, if any, as a data file of t and records its add
// action in e, unless recorded already.
func writeRows[T any](ctx context.Context, t *delta.Table, e *epoch, rows []T) error {
	if _, done := e.adds[t.Name()]; done || len(rows) == 0 {
		return nil
	}
	add, err := delta.WriteFile(ctx, t, rows, nil)
	if err != nil {
		return err
	}
	e.adds[t.Name()] = []delta.AddFile{add}
	return nil
}

// stageGold stores the epoch's gold rows in one Parquet object under
// _checkpoints/stages/gold/ (named after the epoch: a redo overwrites it)
// and adds them to those waiting for the next gold commit.
// When gold is due with this epoch and nothing is staged, the rows go
// straight into the gold file instead (the common case: gold is committed
// with every epoch).
func (c *committer) stageGold(ctx context.Context, e *epoch) error {
	if len(e.gold) == 0 || e.goldDone {
		return nil
	}
	if e.goldDirect || (len(c.goldStaged) == 0 && c.goldIsDue(e)) {
		e.goldDirect = true
		return nil
	}
	name := goldStageName(e.n)
	data, _, err := delta.EncodeParquet(e.gold, nil, nil)
	if err != nil {
		return err
	}
	if err := c.l.Put(ctx, name, data); err != nil {
		return fmt.Errorf("staging gold: %w", err)
	}
	c.goldStaged = append(c.goldStaged, name)
	c.goldRows = append(c.goldRows, e.gold...)
	e.gold = nil // consumed: a second run stages nothing
	return nil
}

// writeGoldFiles writes the staged gold rows as the gold table's files when
// gold is due (GoldInterval, GoldMaxRows, or the final epoch).
func (c *committer) writeGoldFiles(ctx context.Context, e *epoch) error {
	if e.goldDone {
		return nil
	}
	if e.goldDirect || c.goldIsDue(e) {
		rows := c.goldRows
		if e.goldDirect {
			rows = e.gold
		}
		adds, err := c.writeGold(ctx, rows)
		if err != nil {
			return err
		}
		e.adds[schema.Gold] = adds
		e.goldFlushed = c.goldStaged
		c.goldStaged, c.goldRows, e.gold = nil, nil, nil
		c.goldDue = c.opts.Clock.Now().Add(c.goldInterval)
	}
	e.goldDone = true
	return nil
}

// syncFiles makes the epoch's data files durable: the state names them.
func (c *committer) syncFiles(ctx context.Context, _ *epoch) error {
	for _, name := range []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold} {
		if err := c.tables[name].SyncFiles(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (c *committer) writeDevices(ctx context.Context, e *epoch) error {
	if err := c.l.Put(ctx, devicesName(e.n), e.devices); err != nil {
		return fmt.Errorf("writing state of epoch %d: %w", e.n, err)
	}
	return nil
}

func (c *committer) writeEpochState(ctx context.Context, e *epoch) error {
	if c.landing.From.IsZero() && !e.landingHint.IsZero() {
		c.landing.From = e.landingHint
	}
	cp := checkpoint{LandingFrom: unixOrZero(c.landing.From), LandingKept: unixOrZero(c.landing.Kept), Epoch: e.n, WindowUS: c.opts.Window.Microseconds(), LatenessUS: c.opts.AllowedLateness.Microseconds(), MovingAverages: c.opts.MovingAverages,
		Landed: e.landed, Segments: e.segments, DevicesObject: devicesName(e.n), Pending: map[string][]delta.AddFile{}, GoldStaged: c.goldStaged}
	for _, name := range derived {
		cp.Pending[name] = e.adds[name]
	}
	data, err := json.Marshal(cp)
	if err != nil {
		return fmt.Errorf("encoding state of epoch %d: %w", e.n, err)
	}
	if err := c.l.Put(ctx, checkpointName(e.n), data); err != nil {
		return fmt.Errorf("writing state of epoch %d: %w", e.n, err)
	}
	return nil
}

// commitBronze commits bronze with the epoch's txn: the epoch's atomic point.
func (c *committer) commitBronze(ctx context.Context, e *epoch) error {
	return c.commitOnce(ctx, c.tables[schema.Bronze], e.n, e.adds[schema.Bronze])
}

// commitDerived commits the epoch's files of a table after bronze; a table
// with none gets no commit (but an interrupted epoch's recovery commits the
// txn alone, as it always has).
func (c *committer) commitDerived(ctx context.Context, e *epoch, table string) error {
	if len(e.adds[table]) == 0 && !e.recovered {
		return nil
	}
	return c.commitOnce(ctx, c.tables[table], e.n, e.adds[table])
}

// commitOnce commits adds to t with epoch e's txn unless t's txn version is
// e or later already.
func (c *committer) commitOnce(ctx context.Context, t *delta.Table, e int64, adds []delta.AddFile) error {
	if v, ok := t.Snapshot().TxnVersion(AppID); ok && v >= e {
		return nil
	}
	return c.commitTable(ctx, t, e, adds)
}

// deleteFlushedGold deletes the staged gold this epoch committed.
func (c *committer) deleteFlushedGold(ctx context.Context, e *epoch) error {
	for _, name := range e.goldFlushed {
		if err := c.l.Delete(ctx, name); err != nil {
			c.log.Warn("deleting staged gold", slog.Any("err", err))
		}
	}
	e.goldFlushed = nil
	return nil
}

// deleteOldState deletes the state of epoch n-2: recovery no longer needs it.
func (c *committer) deleteOldState(ctx context.Context, e *epoch) error {
	if e.n > 2 {
		for _, name := range []string{checkpointName(e.n - 2), devicesName(e.n - 2)} {
			if err := c.l.Delete(ctx, name); err != nil {
				c.log.Warn("deleting old stage state", slog.Any("err", err))
			}
		}
	}
	return nil
}

// countEpoch counts the epoch in Stats, once.
func (c *committer) countEpoch(_ context.Context, e *epoch) error {
	if e.counted {
		return nil
	}
	e.counted = true
	var silverN, goldN int64 = int64(len(e.silver)), e.goldN
	c.m.count(func(s *Stats) {
		s.Epochs++
		s.SilverRows += silverN
		s.GoldRows += goldN
		s.LastCommit = c.opts.Clock.Now()
	})
	return nil
}

// maintain compacts every CompactEvery epochs, and at the first epoch
// after an hour bucket has closed (compactionGrace past the hour).
func (c *committer) maintain(ctx context.Context, e *epoch) error {
	if e.maintained {
		return nil
	}
	e.maintained = true
	if c.opts.CompactEvery <= 0 {
		return nil
	}
	hour := c.opts.Clock.Now().Add(-compactionGrace).Truncate(time.Hour)
	if e.n%int64(c.opts.CompactEvery) == 0 || hour.After(c.compactedHour) {
		c.compactedHour = hour
		if l := c.opts.UpkeepLock; l != nil {
			l.Lock()
			defer l.Unlock()
		}
		c.compact(ctx, e.segments)
	}
	return nil
}

// compactionGrace is delta.CompactOptions' default Grace: an hour bucket
// is compacted once its end is this far behind the clock.
const compactionGrace = 10 * time.Minute

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func timeOrZero(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}
