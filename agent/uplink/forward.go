package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync/atomic"
	"time"

	"github.com/pilake/pilake/agent/spool"
	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/internal/backoff"
	"github.com/pilake/pilake/internal/clock"
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
	// AckMode says what removes a batch from the spool (default AckPuback).
	AckMode AckMode
	// LandingTimeout is how long a PUBACKed batch waits for its landing ack
	// (AckLanded, AckAuto) before it is sent again; it doubles with every
	// resend of the same batch, up to 4 times (default 10 s).
	LandingTimeout time.Duration
	// MaxUnlanded bounds the batches sent and not yet acknowledged as
	// landed (default 8): beyond it nothing new is sent until acks come, so
	// a collector that is down costs the broker a bounded queue, a timeout
	// resends at most this many, and a batch the broker lost is resent
	// before the device's newer batches are more than MaxUnlanded batches
	// ahead of it (8 s at 1 s batches, inside the collector's 10 s allowed
	// lateness: not late).
	MaxUnlanded int
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Clock times the ack timeout (default clock.Real).
	Clock clock.Clock
}

// AckMode says when a batch counts as delivered.
type AckMode uint8

const (
	// AckPuback deletes a batch on its PUBACK: right when the broker is the
	// collector's embedded one (its PUBACK is sent once the batch is landed)
	// and for Azure IoT Hub (which keeps what it acknowledged).
	AckPuback AckMode = iota
	// AckLanded deletes a batch only when the collector's landing ack (a
	// wire.Ack on wire.AckTopic) names it; a PUBACK only frees the in-flight
	// slot. For external brokers, whose PUBACK says nothing about the lake.
	AckLanded
	// AckAuto is AckLanded until the broker announces (wire.AckModePuback)
	// that its PUBACK means landed: the embedded broker does so on the ack
	// topic's subscription.
	AckAuto
)

// ParseAckMode parses "puback", "landed" or "auto".
func ParseAckMode(s string) (AckMode, error) {
	switch s {
	case "puback":
		return AckPuback, nil
	case "landed":
		return AckLanded, nil
	case "auto", "":
		return AckAuto, nil
	}
	return 0, fmt.Errorf("ack mode %q: want auto, landed or puback", s)
}

func (m AckMode) String() string {
	switch m {
	case AckPuback:
		return "puback"
	case AckLanded:
		return "landed"
	}
	return "auto"
}

// batchKey names a batch: its boot id and sequence number.
type batchKey struct{ boot, seq uint64 }

// unlanded is a batch published (and maybe PUBACKed) but not acknowledged
// as landed. Its record stays in the spool, in flight.
type unlanded struct {
	id       uint64
	readings int
	pubacked bool      // PUBACK received; waiting for the landing ack
	sentAt   time.Time // when the PUBACK came
	resends  int
	released bool // given back to the spool to be sent again
}

// Forwarder moves records from a spool to a broker; see the package documentation.
type Forwarder struct {
	cfg ForwarderConfig
	log *slog.Logger

	acks      chan wire.Ack
	done      chan struct{}
	pubackOK  atomic.Bool // the broker announced that PUBACK means landed
	resent    atomic.Int64
	unlandedN atomic.Int64
	badAcks   atomic.Int64

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
	// Resent counts batches sent again because their landing ack did not
	// come within the LandingTimeout; Unlanded is the batches PUBACKed or in
	// flight and not yet acknowledged as landed; BadAcks counts malformed
	// ack messages.
	Resent, Unlanded, BadAcks int64
	// PubackMeansLanded is true in AckPuback mode, and in AckAuto once the
	// broker said so.
	PubackMeansLanded bool
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
	if cfg.Clock == nil {
		cfg.Clock = clock.Real
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LandingTimeout <= 0 {
		cfg.LandingTimeout = 10 * time.Second
	}
	if cfg.MaxUnlanded <= 0 {
		cfg.MaxUnlanded = 8
	}
	f := &Forwarder{cfg: cfg, log: cfg.Logger, acks: make(chan wire.Ack, 64), done: make(chan struct{})}
	f.pubackOK.Store(cfg.AckMode == AckPuback)
	return f, nil
}

// HandleAck takes a message received on the device's ack topic (see
// wire.Ack): landed ranges, or the broker's announcement that its PUBACK
// means landed. Malformed messages are counted and ignored. Safe to call
// from any goroutine (the MQTT client's); it blocks while Run is busy
// (at most a few acks wait) and returns at once after Run ended.
func (f *Forwarder) HandleAck(payload []byte) {
	a, err := wire.DecodeAck(payload)
	if err != nil {
		f.badAcks.Add(1)
		f.log.Warn("ignoring a malformed landing ack", "err", err, "bytes", len(payload))
		return
	}
	if a.Mode != "" {
		if a.Mode == wire.AckModePuback && f.cfg.AckMode == AckAuto && !f.pubackOK.Swap(true) {
			f.log.Info("the broker lands before it acknowledges: a PUBACK now removes a batch from the spool")
		}
		if a.Mode != wire.AckModePuback {
			f.badAcks.Add(1)
		}
		a = wire.Ack{} // wake Run, which acknowledges what it holds
	}
	select {
	case f.acks <- a:
	case <-f.done:
	}
}

// Counters returns the current totals.
func (f *Forwarder) Counters() Counters {
	return Counters{
		Published: f.published.Load(), Acked: f.acked.Load(), AckedReadings: f.ackedReadings.Load(),
		Failed: f.failed.Load(), BacklogSent: f.backlogSent.Load(), Inflight: f.inflight.Load(),
		Resent: f.resent.Load(), Unlanded: f.unlandedN.Load(), BadAcks: f.badAcks.Load(),
		PubackMeansLanded: f.pubackOK.Load(),
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
// spool (released) and are sent again by the next run. Run may be called
// once.
func (f *Forwarder) Run(ctx context.Context) error {
	defer close(f.done)
	sp, pub := f.cfg.Spool, f.cfg.Pub
	results := make(chan result, 4*f.cfg.MaxInflight)
	inflight := 0
	// Published and not yet acknowledged as landed (in AckPuback mode: not
	// yet PUBACKed), by boot and seq: what a landing ack names.
	pending := map[batchKey]*unlanded{}
	released := 0 // entries of pending given back to the spool
	_, epoch := pub.State()
	gen := &generation{epoch: epoch, abandoned: make(chan struct{})}
	defer func() {
		close(gen.abandoned)
		sp.ReleaseAll()
		f.inflight.Store(0)
		f.unlandedN.Store(0)
	}()
	landed := func(k batchKey, u *unlanded) {
		delete(pending, k)
		if u.released {
			released--
		}
		newly, err := sp.Ack(u.id)
		if err != nil {
			f.log.Warn("recording acknowledgement in the spool", "err", err)
		}
		if !newly {
			return // dropped for the byte cap meanwhile
		}
		f.acked.Add(1)
		f.ackedReadings.Add(int64(u.readings))
		if f.cfg.OnAck != nil {
			f.cfg.OnAck(&spool.Record{ID: u.id, Boot: k.boot, Seq: k.seq, Readings: u.readings})
		}
	}
	// Token bucket for backlog batches.
	burst := float64(f.cfg.MaxInflight)
	tokens, last := burst, time.Now()
	var retryAt time.Time
	retry := backoff.Backoff{Min: 100 * time.Millisecond, Max: 5 * time.Second} // doubling, no jitter
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	sweep := time.NewTicker(min(time.Second, max(f.cfg.LandingTimeout/4, time.Millisecond))) // landing timeouts
	defer sweep.Stop()
	for {
		connected, epoch := pub.State()
		if epoch != gen.epoch {
			// A new connection (or none): what was in flight on the old one
			// may never be acknowledged; send it again on this one. So are
			// batches PUBACKed and not landed: a broker that restarted may
			// have lost them (the collector keeps one copy of each).
			close(gen.abandoned)
			gen = &generation{epoch: epoch, abandoned: make(chan struct{})}
			if inflight > 0 || len(pending) > released {
				f.log.Info("connection changed; sending in-flight and unlanded batches again",
					"in_flight", inflight, "unlanded", len(pending)-released)
			}
			inflight = 0
			f.inflight.Store(0)
			sp.ReleaseAll()
			for _, u := range pending {
				if !u.released {
					u.released, u.pubacked = true, false
					released++
				}
			}
		}
		if f.pubackOK.Load() {
			for k, u := range pending {
				if u.pubacked {
					landed(k, u)
				}
			}
		}
		now := time.Now()
		tokens = min(burst, tokens+now.Sub(last).Seconds()*f.cfg.BacklogRate)
		last = now
		backlogWaiting := false
		// Oldest first, always: a device's batches reach the collector in
		// the order they were captured, so its watermark never passes a
		// backlog still on its way. When more than one batch waits, the
		// sending is rate-capped (BacklogRate).
		// Waiting for landing acks, a new batch goes out only within
		// MaxUnlanded spool records of the oldest one not yet landed: a batch
		// the broker lost is resent before the device's newer batches run
		// far ahead of it (they would move its watermark past it).
		windowEnd := uint64(math.MaxUint64)
		if !f.pubackOK.Load() {
			for _, u := range pending {
				windowEnd = min(windowEnd, u.id+uint64(f.cfg.MaxUnlanded))
			}
		}
		for connected && now.After(retryAt) && inflight < f.cfg.MaxInflight &&
			(len(pending) < f.cfg.MaxUnlanded || released > 0) {
			st := sp.Stats()
			backlog := st.Records-st.Inflight > 1
			if backlog && tokens < 1 {
				backlogWaiting = true
				break
			}
			rec, ok, err := sp.TakeOldest()
			if err != nil {
				return fmt.Errorf("taking the oldest spooled batch: %w", err)
			}
			if !ok {
				break
			}
			if _, resend := pending[batchKey{rec.Boot, rec.Seq}]; !resend && rec.ID >= windowEnd {
				sp.Release(rec.ID) // outside the window: later
				break
			}
			if backlog {
				tokens--
				f.backlogSent.Add(1)
			}
			k := batchKey{rec.Boot, rec.Seq}
			if u := pending[k]; u != nil {
				if u.released {
					u.released = false
					released--
				}
				u.id, u.pubacked = rec.ID, false
			} else {
				pending[k] = &unlanded{id: rec.ID, readings: rec.Readings}
			}
			tok := pub.Publish(f.cfg.Topic(&rec), rec.Data)
			inflight++
			f.inflight.Store(int64(inflight))
			f.published.Add(1)
			go f.await(ctx, tok, rec, gen, results)
		}
		f.unlandedN.Store(int64(len(pending)))
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
			k := batchKey{r.rec.Boot, r.rec.Seq}
			if r.err != nil {
				if !current {
					break // already released with its generation
				}
				f.failed.Add(1)
				sp.Release(r.rec.ID)
				if u := pending[k]; u != nil && !u.released {
					u.released = true
					released++
				}
				d := retry.Next()
				f.log.Warn("publishing batch failed; will retry", "boot", fmt.Sprintf("%016x", r.rec.Boot),
					"seq", r.rec.Seq, "err", r.err, "retry_in", d)
				retryAt = time.Now().Add(d)
				break
			}
			retry.Reset()
			u := pending[k]
			if u == nil {
				break // landed already (a second publication, or the ack beat the PUBACK)
			}
			if f.pubackOK.Load() {
				landed(k, u)
				break
			}
			if current && !u.released && u.id == r.rec.ID {
				u.pubacked, u.sentAt = true, time.Now()
			}
		case a := <-f.acks:
			if a.Mode != "" {
				break // a mode change: handled at the top of the loop
			}
			n := 0
			for k, u := range pending {
				switch {
				case k.boot != a.Boot:
				case inRanges(a.Landed, k.seq):
					landed(k, u)
				case u.pubacked && inRanges(a.Resend, k.seq):
					// The collector misses it: send it again now (it is
					// still here, so it was never acknowledged as landed).
					sp.Release(u.id)
					u.pubacked, u.released = false, true
					released++
					n++
				}
			}
			if n > 0 {
				f.resent.Add(int64(n))
				f.log.Info("the collector asked for batches again; resending", "batches", n)
			}
		case now := <-sweep.C:
			n := 0
			for _, u := range pending {
				if u.pubacked && now.Sub(u.sentAt) >= f.cfg.LandingTimeout<<min(u.resends, 2) {
					sp.Release(u.id)
					u.pubacked, u.released = false, true
					u.resends++
					released++
					n++
				}
			}
			if n > 0 {
				f.resent.Add(int64(n))
				f.log.Warn("no landing ack within the timeout; sending batches again (oldest first)",
					"batches", n, "timeout", f.cfg.LandingTimeout)
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

// inRanges reports whether seq is in the sorted, disjoint ranges rs.
func inRanges(rs [][2]uint64, seq uint64) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i][1] >= seq })
	return i < len(rs) && rs[i][0] <= seq
}

var errAckTimeout = errors.New("no PUBACK within the ack timeout")

// await reports tok's outcome. A token of an abandoned generation is only
// waited for while the connection could still deliver it: its success is
// then reported, its failure is not needed (the record was released).
func (f *Forwarder) await(ctx context.Context, tok Token, rec spool.Record, gen *generation, results chan<- result) {
	timeout := f.cfg.Clock.After(f.cfg.AckTimeout)
	var err error
	select {
	case <-tok.Done():
		err = tok.Error()
	case <-timeout:
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
