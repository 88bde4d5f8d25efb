package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pilake/pilake/agent/spool"
)

// ForwarderConfig configures a Forwarder.
type ForwarderConfig struct {
	// Spool holds the batches to send. Required.
	Spool *spool.Spool
	// Pub is the connection. Required.
	Pub Publisher
	// Topic returns the topic of a record. Required.
	Topic func(rec *spool.Record) string
	// MaxInflight bounds the messages published and not yet acknowledged (default 16).
	MaxInflight int
	// BacklogRate caps backlog (not live) batches sent per second (default 20,
	// i.e. 20 s of 400 Hz data per second).
	BacklogRate float64
	// AckTimeout is how long to wait for a PUBACK before sending the batch
	// again (default 2 min; paho itself resends in-flight messages after a
	// reconnect, so this is only a backstop).
	AckTimeout time.Duration
	// OnAck is called (from the Run goroutine) after a record is acknowledged
	// and removed from the spool.
	OnAck func(rec *spool.Record)
	// Logger (default slog.Default()).
	Logger *slog.Logger
}

// Forwarder moves records from a spool to a broker; see the package documentation.
type Forwarder struct {
	cfg ForwarderConfig
	log *slog.Logger

	inflight      atomic.Int64
	published     atomic.Int64
	acked         atomic.Int64
	ackedReadings atomic.Int64
	failed        atomic.Int64
	backlogSent   atomic.Int64
}

// Counters are a Forwarder's totals since it was made.
type Counters struct {
	Published, Acked, AckedReadings, Failed, BacklogSent, Inflight int64
}

// NewForwarder validates cfg and returns a Forwarder; Run drives it.
func NewForwarder(cfg ForwarderConfig) (*Forwarder, error) {
	if cfg.Spool == nil || cfg.Pub == nil || cfg.Topic == nil {
		return nil, errors.New("forwarder: Spool, Pub and Topic are required")
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = 16
	}
	if cfg.BacklogRate <= 0 {
		cfg.BacklogRate = 20
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Forwarder{cfg: cfg, log: cfg.Logger}, nil
}

// Counters returns the current totals.
func (f *Forwarder) Counters() Counters {
	return Counters{
		Published: f.published.Load(), Acked: f.acked.Load(), AckedReadings: f.ackedReadings.Load(),
		Failed: f.failed.Load(), BacklogSent: f.backlogSent.Load(), Inflight: f.inflight.Load(),
	}
}

type result struct {
	rec spool.Record
	gen *generation
	err error
}

// generation is the set of publications made on one connection. When the
// connection ends, its generation is abandoned: its records go back to the
// spool to be sent again, and late results only count if they succeeded.
type generation struct {
	epoch     uint64
	abandoned chan struct{}
}

// Run sends records until ctx ends. Records still in flight then stay in the
// spool (released) and are sent again by the next run.
func (f *Forwarder) Run(ctx context.Context) error {
	sp, pub := f.cfg.Spool, f.cfg.Pub
	results := make(chan result, 4*f.cfg.MaxInflight)
	inflight := 0
	_, epoch := pub.State()
	gen := &generation{epoch: epoch, abandoned: make(chan struct{})}
	defer func() {
		close(gen.abandoned)
		sp.ReleaseAll()
		f.inflight.Store(0)
	}()
	// Token bucket for backlog batches.
	burst := float64(f.cfg.MaxInflight)
	tokens, last := burst, time.Now()
	var retryAt time.Time
	backoff := 100 * time.Millisecond
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		connected, epoch := pub.State()
		if epoch != gen.epoch {
			// A new connection (or none): what was in flight on the old one
			// may never be acknowledged; send it again on this one.
			close(gen.abandoned)
			gen = &generation{epoch: epoch, abandoned: make(chan struct{})}
			if inflight > 0 {
				f.log.Info("connection changed; sending in-flight batches again", "batches", inflight)
			}
			inflight = 0
			f.inflight.Store(0)
			sp.ReleaseAll()
		}
		now := time.Now()
		tokens = min(burst, tokens+now.Sub(last).Seconds()*f.cfg.BacklogRate)
		last = now
		backlogWaiting := false
		for connected && now.After(retryAt) && inflight < f.cfg.MaxInflight {
			rec, ok, err := sp.TakeNewest()
			if err != nil {
				return fmt.Errorf("taking the newest spooled batch: %w", err)
			}
			if !ok {
				if tokens < 1 {
					backlogWaiting = true
					break
				}
				if rec, ok, err = sp.TakeOldest(); err != nil {
					return fmt.Errorf("taking the oldest spooled batch: %w", err)
				}
				if !ok {
					break
				}
				tokens--
				f.backlogSent.Add(1)
			}
			tok := pub.Publish(f.cfg.Topic(&rec), rec.Data)
			inflight++
			f.inflight.Store(int64(inflight))
			f.published.Add(1)
			go f.await(ctx, tok, rec, gen, results)
		}
		var wake time.Duration = -1
		switch {
		case now.Before(retryAt):
			wake = retryAt.Sub(now)
		case backlogWaiting:
			wake = time.Duration((1 - tokens) / f.cfg.BacklogRate * float64(time.Second))
		}
		var timerC <-chan time.Time
		if wake >= 0 {
			timer.Reset(max(wake, time.Millisecond))
			timerC = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case r := <-results:
			current := r.gen == gen
			if current {
				inflight--
				f.inflight.Store(int64(inflight))
			}
			if r.err != nil {
				if !current {
					break // already released with its generation
				}
				f.failed.Add(1)
				sp.Release(r.rec.ID)
				f.log.Warn("publishing batch failed; will retry", "boot", fmt.Sprintf("%016x", r.rec.Boot),
					"seq", r.rec.Seq, "err", r.err, "retry_in", backoff)
				retryAt = time.Now().Add(backoff)
				backoff = min(2*backoff, 5*time.Second)
				break
			}
			backoff = 100 * time.Millisecond
			newly, err := sp.Ack(r.rec.ID)
			if err != nil {
				f.log.Warn("recording acknowledgement in the spool", "err", err)
			}
			if !newly {
				break // a second publication of an acknowledged batch
			}
			f.acked.Add(1)
			f.ackedReadings.Add(int64(r.rec.Readings))
			if f.cfg.OnAck != nil {
				f.cfg.OnAck(&r.rec)
			}
		case <-sp.Notify():
		case <-pub.Changed():
		case <-timerC:
		}
		if timerC != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

var errAckTimeout = errors.New("no PUBACK within the ack timeout")

// await reports tok's outcome. A token of an abandoned generation is only
// waited for while the connection could still deliver it: its success is
// then reported, its failure is not needed (the record was released).
func (f *Forwarder) await(ctx context.Context, tok Token, rec spool.Record, gen *generation, results chan<- result) {
	t := time.NewTimer(f.cfg.AckTimeout)
	defer t.Stop()
	var err error
	select {
	case <-tok.Done():
		err = tok.Error()
	case <-t.C:
		err = errAckTimeout
	case <-gen.abandoned:
		select {
		case <-tok.Done(): // it may have completed at the same moment
			if err = tok.Error(); err != nil {
				return
			}
		default:
			return
		}
	case <-ctx.Done():
		return
	}
	select {
	case results <- result{rec: rec, gen: gen, err: err}:
	case <-ctx.Done():
	}
}

// Drain waits until the spool holds no unacknowledged batch, or ctx ends.
// Call it while Run is running (at shutdown, with a deadline).
func (f *Forwarder) Drain(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if f.cfg.Spool.Stats().Records == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			st := f.cfg.Spool.Stats()
			return fmt.Errorf("draining: %d batches (%d readings) still unacknowledged, kept in the spool: %w",
				st.Records, st.Readings, ctx.Err())
		case <-t.C:
		}
	}
}
