package landing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pilake/pilake/agent/redact"
	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/internal/clock"
)

// Message is one received batch, as the transport delivered it.
type Message struct {
	// Data is the batch as received (binary v1 or JSON). Land does not keep
	// it after returning: the stages get the decoded Batch.
	Data []byte
	// Source is "mqtt" or "iothub".
	Source string
	// Topic is the MQTT topic or the routing file, for the quarantine record.
	Topic string
	// Device is the device id the transport vouches for (the identity the
	// broker authenticated, the MQTT topic's last level, IoT Hub's
	// connectionDeviceId), or "" if it does not. A batch claiming another
	// device is quarantined. A transport that names devices must always set
	// it: a topic that names no device is quarantined by the caller
	// (KindBadTopic), never landed with the check skipped.
	Device string
	// ReceivedAt is when the collector received the message (zero = now).
	ReceivedAt time.Time
	// Peer names the sender for the quarantine limit (e.g. the
	// authenticated identity); "" means Source.
	Peer string
}

// Landed is a batch durable in landing/, handed to the stages
// (stages.Pipeline.Submit).
type Landed struct {
	// Name is the landing object holding the batch: the segment.
	Name string
	// SegmentRecords is the number of records in the segment Name: the
	// receiver knows it has seen the whole segment once it has processed
	// that many of its batches (if every Land call of the segment submits).
	// 0: the batch does not count toward its segment (a receiver's own
	// reading of landing/).
	SegmentRecords int
	Batch          *wire.Batch // decoded and validated; owned by the receiver
	ReceivedAt     time.Time
	Source         string
}

// Outcome says what Land did with a message.
type Outcome int

// Outcomes of Land.
const (
	// Landed: written to landing/ (in a segment) and submitted.
	OutcomeLanded Outcome = iota + 1
	// Duplicate: this process landed the batch already (a redelivery); not
	// written or submitted again.
	OutcomeDuplicate
	// Quarantined: unusable, set aside in _quarantine/ with the reason.
	OutcomeQuarantined
)

func (o Outcome) String() string {
	switch o {
	case OutcomeLanded:
		return "landed"
	case OutcomeDuplicate:
		return "duplicate"
	case OutcomeQuarantined:
		return "quarantined"
	}
	return "unknown"
}

// Options configure a Lander.
type Options struct {
	// Lake receives landing/ and _quarantine/ objects. Required.
	Lake lake.Lake
	// Submit hands a landed batch to the stages; it may block (back-pressure).
	// Nil: batches are only landed.
	Submit func(context.Context, Landed) error
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// OnDurable, if set, is told each batch Land found durable in landing/
	// (landed, or a duplicate of one landed): what the collector's landing
	// acks (ingest.Acker) report to the agents. It must not block.
	OnDurable func(device string, boot, seq uint64)
	// Clock tells the time: ReceivedAt, segment names, the new-device and
	// quarantine rate limits, forgetting [clock.Real].
	Clock clock.Clock
	// NoGroupCommit makes every write durable on its own (PutIfAbsent) even
	// when the lake offers group commit.
	NoGroupCommit bool
	// MaxConcurrentWrites is the number of segments written at once [2 when
	// the lake offers group commit (a local disk), else 4], and with group
	// commit also the number of file writer goroutines. A free writer takes
	// every batch queued meanwhile as one segment, so fewer writers make
	// larger segments. The bound is the Lander's, not the lake's, so the
	// stages' few data file writes never queue behind landings.
	MaxConcurrentWrites int
	// SegmentLinger is how long a free writer waits for more batches after
	// the first one of a segment, unless the segment fills first [5ms;
	// negative: no wait]. Every segment costs a file (or blob) and a sync,
	// ~150 µs of CPU on a local disk; without the wait a fast disk makes
	// segments of a handful of batches at full load (at 15,000 batches/s,
	// ~1,700 segments and syncs a second, an eighth of the machine). The wait
	// adds at most SegmentLinger to the time until a batch is acknowledged.
	SegmentLinger time.Duration
	// Instance names this Lander's segments (see NewInstance); default a new
	// random one. A process shares it with its stages, which skip their own
	// Lander's segments when they scan for other collectors'.
	Instance string
	// QuarantineLimit bounds quarantined input per source.
	QuarantineLimit QuarantineLimit
	// ForgetAfter: a stream (device and boot) nothing was landed in for
	// this long is forgotten, so a fleet whose devices reboot and come and
	// go does not grow the Lander's memory [24h; negative: never]. A batch
	// of a forgotten stream redelivered later lands again; the stages keep
	// one copy in bronze.
	ForgetAfter time.Duration
	// NewDeviceLimit bounds how fast device ids not seen before are taken.
	NewDeviceLimit NewDeviceLimit
}

// NewInstance returns a new random Lander instance id.
func NewInstance() string {
	var id [8]byte
	_, _ = rand.Read(id[:])
	return hex.EncodeToString(id[:])
}

// DefaultForgetAfter is Options.ForgetAfter's default.
const DefaultForgetAfter = 24 * time.Hour

// DefaultSegmentLinger is Options.SegmentLinger's default.
const DefaultSegmentLinger = 5 * time.Millisecond

// Stats are the Lander's counters; read them with the atomics' Load.
type Stats struct {
	Batches    atomic.Uint64 // batches landed (not counting duplicates)
	Readings   atomic.Uint64 // readings in landed batches
	Bytes      atomic.Uint64 // bytes of landed batches (as received)
	Segments   atomic.Uint64 // segments written durably
	Duplicates atomic.Uint64 // redeliveries of batches this process landed
	Forgotten  atomic.Uint64 // streams forgotten after Options.ForgetAfter without a batch
	LakeErrors atomic.Uint64 // landing or quarantine writes that failed (the message was not acknowledged)
	// QuarantineDropped counts inputs beyond the quarantine limit:
	// acknowledged and dropped without a record.
	QuarantineDropped atomic.Uint64
	// NewDeviceRefused counts batches refused (not acknowledged) because
	// their device id was new and NewDeviceLimit was reached.
	NewDeviceRefused atomic.Uint64
	// LastLagUS is receive time minus the newest reading's capture time of the
	// last landed batch, in µs.
	LastLagUS atomic.Int64
	// Syncs and SyncNanos count group-commit rounds and the time spent in them.
	Syncs, SyncNanos atomic.Uint64
	quarantined      map[string]*atomic.Uint64
}

// Quarantined returns the count of inputs quarantined with kind.
func (s *Stats) Quarantined(kind string) uint64 {
	if c, ok := s.quarantined[kind]; ok {
		return c.Load()
	}
	return 0
}

// Lander lands messages; safe for concurrent use.
type Lander struct {
	opts  Options
	log   *slog.Logger
	gw    *groupWriter // set when the lake offers group commit
	sw    *segWriter
	seen  seenSet
	stats Stats
	qlim  *qLimiter
	gate  *deviceGate
	// lastDropLog is the unix second a dropped quarantine was last logged.
	lastDropLog atomic.Int64
	// detached counts the goroutines that finish a landing whose caller
	// gave up (see Land); Close waits for them.
	detached  sync.WaitGroup
	closeOnce sync.Once
}

// New returns a Lander.
func New(opts Options) (*Lander, error) {
	if opts.Lake == nil {
		return nil, errors.New("landing: no lake")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real
	}
	l := &Lander{opts: opts, log: opts.Logger, qlim: newQLimiter(opts.QuarantineLimit), gate: newDeviceGate(opts.NewDeviceLimit)}
	l.stats.quarantined = map[string]*atomic.Uint64{}
	for _, k := range Kinds {
		l.stats.quarantined[k] = new(atomic.Uint64)
	}
	gw, group := opts.Lake.(lake.GroupWriter)
	group = group && !opts.NoGroupCommit
	if opts.MaxConcurrentWrites <= 0 {
		opts.MaxConcurrentWrites = 4
		if group {
			opts.MaxConcurrentWrites = 2
		}
	}
	if opts.Instance == "" {
		opts.Instance = NewInstance()
	} else if !ValidInstance(opts.Instance) {
		return nil, fmt.Errorf("landing: instance %q: want 16 lower-case hex digits", opts.Instance)
	}
	if opts.SegmentLinger == 0 {
		opts.SegmentLinger = DefaultSegmentLinger
	}
	if opts.ForgetAfter == 0 {
		opts.ForgetAfter = DefaultForgetAfter
	}
	l.opts = opts
	if group {
		l.gw = newGroupWriter(gw, opts.MaxConcurrentWrites, func(d time.Duration) {
			l.stats.Syncs.Add(1)
			l.stats.SyncNanos.Add(uint64(d))
		})
	}
	l.sw = newSegWriter(l, opts.MaxConcurrentWrites)
	return l, nil
}

// Close writes the open segment (without waiting for its linger), waits for
// the landings whose callers gave up (each completes and hands its batch to
// Submit, which must return: the stages take it or are closed), and stops
// the Lander's goroutines. Call it after every Land, LandTopic and Quarantine
// call has returned; none may follow.
func (l *Lander) Close() error {
	l.closeOnce.Do(func() {
		close(l.sw.stop) // the flushers write the open segment first
		l.sw.wg.Wait()
		l.detached.Wait()
		if l.gw != nil {
			l.gw.close()
		}
	})
	return nil
}

// Stats returns the Lander's live counters.
func (l *Lander) Stats() *Stats { return &l.stats }

// Instance returns the id this Lander names its segments with (random,
// chosen by New).
func (l *Lander) Instance() string { return l.sw.instance }

// Land makes m durable in the lake: landed (and submitted) or quarantined.
// A nil error means the message may be acknowledged. An error (the lake
// failed, or ctx ended) means it must not be: it will be redelivered.
func (l *Lander) Land(ctx context.Context, m Message) (Outcome, error) {
	if m.ReceivedAt.IsZero() {
		m.ReceivedAt = l.opts.Clock.Now()
	}
	b := newBatch()
	if err := wire.Decode(m.Data, b); err != nil {
		ReleaseBatch(b)
		return l.quarantine(ctx, m, classify(err), err.Error())
	}
	if m.Device != "" && m.Device != b.DeviceID {
		reason := fmt.Sprintf("batch of device %q arrived as device %q", b.DeviceID, m.Device)
		ReleaseBatch(b) // after its last use: the pool may hand it out at once
		return l.quarantine(ctx, m, KindDeviceMismatch, reason)
	}
	// The bucket runs on the collector's clock, not on the receive time
	// (a routing record's is its enqueue time, possibly days old).
	if m.Peer == "" && !l.gate.admit(b.DeviceID, l.opts.Clock.Now()) {
		ReleaseBatch(b)
		l.stats.NewDeviceRefused.Add(1)
		return 0, ErrNewDeviceRate
	}
	key := streamSeq{device: b.DeviceID, boot: b.BootID, seq: b.Seq}
	for {
		dup, wait := l.seen.claim(key)
		if dup {
			// A redelivery of a batch this process made durable.
			ReleaseBatch(b)
			l.stats.Duplicates.Add(1)
			if l.opts.OnDurable != nil {
				l.opts.OnDurable(key.device, key.boot, key.seq)
			}
			return OutcomeDuplicate, nil
		}
		if wait == nil {
			break
		}
		// A redelivery while the first copy is being landed: wait for it
		// (if it fails, this copy lands). A redelivery of a batch another
		// process landed lands again: the stages keep one copy.
		select {
		case <-wait:
		case <-ctx.Done():
			ReleaseBatch(b)
			return 0, ctx.Err()
		}
	}
	seg, err := l.sw.add(ctx, &m, key)
	if err != nil {
		l.seen.settle(key)
		ReleaseBatch(b)
		return 0, err
	}
	select {
	case <-seg.done:
	case <-ctx.Done():
		// The caller gives up, but its record is in the segment and may
		// still become durable; then it must reach the stages, because a
		// redelivery will find it landed and not hand it on again. So the
		// rest of the landing goes on without the caller.
		l.detached.Add(1)
		go func() {
			defer l.detached.Done()
			_, _ = l.finish(context.WithoutCancel(ctx), seg, key, b, m)
		}()
		return 0, ctx.Err()
	}
	return l.finish(ctx, seg, key, b, m)
}

// LandTopic lands a message published on MQTT topic. The topic must be
// exactly pilake/v1/telemetry/{device}: a topic with more, fewer or empty
// levels is quarantined (KindBadTopic), never landed with the device check
// skipped. The batch must be of that device, and authenticated, the device
// the broker authenticated the publisher as ("" if it did not), must be it
// too, so that no identity can land (or pre-empt the sequence numbers of)
// another device's batches.
func (l *Lander) LandTopic(ctx context.Context, authenticated, topic string, payload []byte) error {
	dev, ok := wire.DeviceFromTopic(topic)
	m := Message{Data: payload, Source: "mqtt", Topic: topic, Device: dev, Peer: authenticated}
	switch {
	case !ok || topic != wire.TelemetryTopic(dev) || !wire.ValidDeviceID(dev):
		return l.Quarantine(ctx, m, KindBadTopic, "topic is not pilake/v1/telemetry/{device id}")
	case authenticated != "" && authenticated != dev:
		return l.Quarantine(ctx, m, KindDeviceMismatch,
			fmt.Sprintf("published on the topic of %q by identity %q", dev, authenticated))
	}
	_, err := l.Land(ctx, m)
	return err
}

// finish completes Land once b's segment is written: counts the batch and
// hands it to the stages, or reports the segment's failure.
func (l *Lander) finish(ctx context.Context, seg *segment, key streamSeq, b *wire.Batch, m Message) (Outcome, error) {
	<-seg.done
	l.seen.settle(key) // after writeSegment marked it landed, if it did
	if seg.err != nil {
		err := fmt.Errorf("landing batch %s: %w", b.Key(), seg.err)
		ReleaseBatch(b) // after its last use
		l.stats.LakeErrors.Add(1)
		return 0, err
	}
	n := len(b.Readings)
	l.stats.Batches.Add(1)
	l.stats.Readings.Add(uint64(n))
	l.stats.Bytes.Add(uint64(len(m.Data)))
	l.stats.LastLagUS.Store(m.ReceivedAt.UnixMicro() - b.Readings[n-1].TimeUS)
	if l.opts.OnDurable != nil {
		l.opts.OnDurable(key.device, key.boot, key.seq)
	}
	if l.opts.Submit == nil {
		ReleaseBatch(b)
		return OutcomeLanded, nil
	}
	landed := Landed{Name: seg.name, SegmentRecords: seg.n, Batch: b, ReceivedAt: m.ReceivedAt, Source: m.Source}
	err := l.opts.Submit(ctx, landed)
	if err == nil {
		return OutcomeLanded, nil
	}
	err = fmt.Errorf("submitting batch %s of %s: %w", b.Key(), seg.name, err) // before b may be released
	if ctx.Err() != nil {
		// The caller gave up while the stages were busy (back-pressure).
		// The batch is durable, and a redelivery will be a duplicate: hand
		// it over in the background (until the stages take it or close;
		// closed stages find it in landing/ when they next start).
		l.detached.Add(1)
		go func() {
			defer l.detached.Done()
			if l.opts.Submit(context.WithoutCancel(ctx), landed) != nil {
				ReleaseBatch(b)
			}
		}()
		return 0, err
	}
	// Durable in landing/ but refused (the stages are closed): their
	// recovery lands it into bronze on the next start. Not acknowledging
	// makes the broker redeliver; the redelivery is a duplicate.
	ReleaseBatch(b) // not handed over
	return 0, err
}

// batches recycles decoded batches: their readings are ~45 % of the bytes
// the collector allocates at full load.
var batches = sync.Pool{New: func() any { return new(wire.Batch) }}

func newBatch() *wire.Batch { return batches.Get().(*wire.Batch) }

// ReleaseBatch gives a batch Land submitted back for reuse, once its
// receiver (the stages, through stages.Options.Release) no longer reads it
// or its readings. Releasing a batch still in use corrupts it.
func ReleaseBatch(b *wire.Batch) {
	if b == nil || cap(b.Readings) > 1<<12 {
		return // keep the pool's slices modest (a 1 s batch at 400 Hz is 400)
	}
	*b = wire.Batch{Readings: b.Readings[:0]}
	batches.Put(b)
}

// write stores data under name put-if-absent and returns once it is durable.
func (l *Lander) write(ctx context.Context, name string, data []byte) error {
	if l.gw != nil {
		return l.gw.WriteIfAbsent(ctx, name, data)
	}
	return l.opts.Lake.PutIfAbsent(ctx, name, data)
}

// Lengths kept of untrusted strings in quarantine records and logs.
const (
	maxTopicLen  = 256
	maxReasonLen = 1024
)

func (l *Lander) quarantine(ctx context.Context, m Message, kind, reason string) (Outcome, error) {
	peer := m.Peer
	if peer == "" {
		peer = m.Source
	}
	topic, reason := redact.Clean(m.Topic, maxTopicLen), redact.Clean(reason, maxReasonLen)
	if !l.qlim.allow(peer, len(m.Data), l.opts.Clock.Now()) {
		n := l.stats.QuarantineDropped.Add(1)
		if now := l.opts.Clock.Now().Unix(); now > l.lastDropLog.Load() && l.lastDropLog.CompareAndSwap(l.lastDropLog.Load(), now) {
			l.log.Warn("quarantine limit reached; dropping rejected input without a record", "source", m.Source,
				"peer", redact.Clean(peer, 80), "kind", kind, "reason", reason, "topic", topic, "dropped_total", n)
		}
		return OutcomeQuarantined, nil
	}
	rec := Record{Reason: reason, Kind: kind, Source: m.Source, Topic: topic, ReceivedAt: m.ReceivedAt}
	err := quarantine(ctx, l.write, m.Data, rec)
	if err != nil {
		l.stats.LakeErrors.Add(1)
		return 0, err
	}
	if c, ok := l.stats.quarantined[kind]; ok {
		c.Add(1)
	}
	l.log.Warn("input quarantined", "kind", kind, "reason", reason, "source", m.Source, "topic", topic, "bytes", len(m.Data))
	return OutcomeQuarantined, nil
}

// classify maps a wire decoding error to a quarantine kind.
func classify(err error) string {
	switch {
	case errors.Is(err, wire.ErrVersion):
		return KindVersion
	case errors.Is(err, wire.ErrCorrupt):
		return KindCorrupt
	case errors.Is(err, wire.ErrInvalid):
		msg := err.Error()
		switch {
		case strings.Contains(msg, "device id"):
			return KindBadDevice
		case strings.Contains(msg, "outside"), strings.Contains(msg, "out of range"), strings.Contains(msg, "over 100"):
			return KindOutOfRange
		}
		return KindInvalid
	}
	return KindCorrupt
}

// Quarantine sets m aside with kind and reason (durably) and counts it: for
// input that is rejected before it is a batch, like a broken IoT Hub
// routing record or file.
func (l *Lander) Quarantine(ctx context.Context, m Message, kind, reason string) error {
	if m.ReceivedAt.IsZero() {
		m.ReceivedAt = l.opts.Clock.Now()
	}
	_, err := l.quarantine(ctx, m, kind, reason)
	return err
}
