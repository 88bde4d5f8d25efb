package stages

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
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

	compactions int // compaction rounds
}

func newCommitter(p *Pipeline) *committer {
	return &committer{l: p.l, opts: p.opts, log: p.log, m: &p.m, instance: p.instance,
		tables: map[string]*delta.Table{}}
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
	c.goldDue = c.opts.Now().Add(c.goldInterval)
}

// run commits epochs in order, retrying each until it succeeds or ctx ends;
// a permanent error, or ctx's end, goes to errc and the rest of commits is
// dropped.
func (c *committer) run(ctx context.Context, commits <-chan *epoch, errc chan<- error) {
	backoff := c.opts.RetryBackoff
	for e := range commits {
		for {
			err := c.commitEpoch(ctx, e)
			if err == nil {
				backoff = c.opts.RetryBackoff
				break
			}
			c.m.count(func(s *Stats) { s.CommitRetries++ })
			if errors.Is(err, delta.ErrConflict) || errors.Is(err, delta.ErrUnsupported) || ctx.Err() != nil {
				errc <- fmt.Errorf("committing epoch %d: %w", e.n, err)
				for range commits {
				}
				return
			}
			c.log.Warn("committing epoch failed; retrying", slog.Int64("epoch", e.n), slog.Any("error", err), slog.Duration("backoff", backoff))
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
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
	actions = append(actions, delta.Action{Txn: &delta.Txn{AppID: AppID, Version: e, LastUpdated: c.opts.Now().UnixMilli()}})
	_, err := t.CommitID(ctx, actions, "STREAMING UPDATE", fmt.Sprintf("%s-%s-%d", c.instance, t.Name(), e))
	return err
}

func (c *committer) commitEpoch(ctx context.Context, e *epoch) error {
	e.attempts++
	if !e.quarOK {
		for _, q := range e.quar {
			if err := c.writeQuarantine(ctx, q); err != nil {
				return err
			}
		}
		e.quarOK = true
	}
	// Each step below records its result in e, so that a retry after a
	// failure resumes where it failed and never redoes a step whose result
	// is already recorded (or, for gold, consumed).
	if !e.filesOK {
		if e.adds == nil {
			e.adds = map[string][]delta.AddFile{}
		}
		if _, done := e.adds[schema.Bronze]; !done && e.rows > 0 {
			if e.bronzeData == nil {
				data, err := e.bronze.Close()
				if err != nil {
					return err
				}
				e.bronzeData = data
			}
			add, err := c.tables[schema.Bronze].PutFile(ctx, e.bronzeData, e.bronze.Stats(), nil)
			if err != nil {
				return err
			}
			e.adds[schema.Bronze] = []delta.AddFile{add}
		}
		if _, done := e.adds[schema.Silver]; !done && len(e.silver) > 0 {
			add, err := delta.WriteFile(ctx, c.tables[schema.Silver], e.silver, nil)
			if err != nil {
				return err
			}
			e.adds[schema.Silver] = []delta.AddFile{add}
		}
		if _, done := e.adds[schema.SilverLate]; !done && len(e.late) > 0 {
			add, err := delta.WriteFile(ctx, c.tables[schema.SilverLate], e.late, nil)
			if err != nil {
				return err
			}
			e.adds[schema.SilverLate] = []delta.AddFile{add}
		}
		// Gold due now and nothing staged: this epoch's rows go straight
		// into the gold file, not through a staging object.
		due := e.final || len(c.goldRows)+len(e.gold) >= c.opts.GoldMaxRows || !c.opts.Now().Before(c.goldDue)
		direct := due && len(c.goldStaged) == 0
		if len(e.gold) > 0 && !direct {
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
			e.gold = nil
		}
		if !e.goldDone {
			if due {
				rows := c.goldRows
				if direct {
					rows = e.gold
				}
				adds, err := c.writeGold(ctx, rows)
				if err != nil {
					return err
				}
				e.adds[schema.Gold] = adds
				e.goldFlushed = c.goldStaged
				c.goldStaged, c.goldRows, e.gold = nil, nil, nil
				c.goldDue = c.opts.Now().Add(c.goldInterval)
			}
			e.goldDone = true
		}
		// The state checkpoint names these files: make them durable first.
		for _, name := range []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold} {
			if err := c.tables[name].SyncFiles(ctx); err != nil {
				return err
			}
		}
		e.filesOK = true
	}
	if !e.cpOK {
		cp := checkpoint{Epoch: e.n, WindowUS: c.opts.Window.Microseconds(), LatenessUS: c.opts.AllowedLateness.Microseconds(), MovingAverages: c.opts.MovingAverages,
			Landed: e.landed, Segments: e.segments, DevicesObject: devicesName(e.n), Pending: map[string][]delta.AddFile{}, GoldStaged: c.goldStaged}
		if err := c.l.Put(ctx, devicesName(e.n), e.devices); err != nil {
			return fmt.Errorf("writing state of epoch %d: %w", e.n, err)
		}
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
		e.cpOK = true
	}
	for _, name := range append([]string{schema.Bronze}, derived...) {
		if e.tableOK[name] {
			continue
		}
		if name != schema.Bronze && len(e.adds[name]) == 0 {
			e.tableOK[name] = true
			continue
		}
		if err := c.commitTable(ctx, c.tables[name], e.n, e.adds[name]); err != nil {
			return err
		}
		e.tableOK[name] = true
	}
	// Staged gold that this epoch committed is no longer needed.
	for _, name := range e.goldFlushed {
		if err := c.l.Delete(ctx, name); err != nil {
			c.log.Warn("deleting staged gold", slog.Any("error", err))
		}
	}
	e.goldFlushed = nil
	// The state of epoch n-2 is no longer needed for recovery.
	if e.n > 2 {
		for _, name := range []string{checkpointName(e.n - 2), devicesName(e.n - 2)} {
			if err := c.l.Delete(ctx, name); err != nil {
				c.log.Warn("deleting old stage state", slog.Any("error", err))
			}
		}
	}
	var silverN, goldN int64 = int64(len(e.silver)), e.goldN
	c.m.count(func(s *Stats) {
		s.Epochs++
		s.SilverRows += silverN
		s.GoldRows += goldN
		s.LastCommit = c.opts.Now()
	})
	if c.opts.CompactEvery > 0 && e.n%int64(c.opts.CompactEvery) == 0 {
		c.compact(ctx)
	}
	return nil
}
