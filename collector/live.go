package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/schema"
)

// livePublisher publishes the stages' live updates without ever blocking
// them: Offer copies the update into a bounded queue, or drops and counts it
// when the publisher is behind. Updates of a device whose live topic nobody
// subscribes to are not encoded at all (see watch).
//
// It runs once per batch, so it does not allocate in the steady state:
// queued updates are recycled through a pool, topics are cached per device,
// and updates are encoded with schema.LiveUpdate.AppendJSON into one buffer.
type livePublisher struct {
	queue chan *liveItem
	items sync.Pool // of *liveItem
	// publish must not keep payload after it returns: the buffer is reused.
	publish func(topic string, payload []byte) error
	watched atomic.Pointer[func(topic string) bool]
	now     func() time.Time
	log     *slog.Logger

	mu     sync.Mutex
	topics map[string]string // device → wire.LiveTopic(device)

	buf []byte // Run's encoding buffer

	published atomic.Uint64
	dropped   atomic.Uint64
	failed    atomic.Uint64
	unwatched atomic.Uint64 // updates skipped because nobody subscribed
}

// liveItem is one queued update; its slices belong to the publisher.
type liveItem struct {
	u      schema.LiveUpdate
	topic  string
	silver []schema.LiveSilver // u.Silver's backing array, kept when u.Silver is nil
	gold   []schema.GoldRow
}

// maxTopicCache bounds the per-device topic cache (one entry per device seen).
const maxTopicCache = 1 << 16

func newLivePublisher(publish func(topic string, payload []byte) error, log *slog.Logger) *livePublisher {
	return &livePublisher{queue: make(chan *liveItem, 4096), publish: publish, now: time.Now, log: log,
		topics: make(map[string]string)}
}

// watch makes Offer skip (and count as unwatched) updates whose topic
// subscribed reports nobody subscribes to, e.g. the embedded broker's
// HasSubscribers. Without it every update is published.
func (p *livePublisher) watch(subscribed func(topic string) bool) {
	p.watched.Store(&subscribed)
}

// topic returns device's live topic without allocating after the first time.
func (p *livePublisher) topic(device string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.topics[device]
	if !ok {
		if len(p.topics) >= maxTopicCache {
			clear(p.topics)
		}
		t = wire.LiveTopic(device)
		p.topics[device] = t
	}
	return t
}

// Offer is stages.Options.Live: it runs on the pipeline's goroutine and the
// update's slices are reused after it returns, so it copies them.
func (p *livePublisher) Offer(u schema.LiveUpdate) {
	topic := p.topic(u.Device)
	if w := p.watched.Load(); w != nil && !(*w)(topic) {
		p.unwatched.Add(1)
		return
	}
	it, _ := p.items.Get().(*liveItem)
	if it == nil {
		it = new(liveItem)
	}
	it.topic = topic
	it.u = u
	// Keep nil and empty apart: they encode differently (null, []).
	it.u.Silver, it.u.Gold = nil, nil
	if u.Silver != nil {
		if it.silver == nil {
			it.silver = make([]schema.LiveSilver, 0, max(len(u.Silver), 4))
		}
		it.silver = append(it.silver[:0], u.Silver...)
		it.u.Silver = it.silver
	}
	if u.Gold != nil {
		if it.gold == nil {
			it.gold = make([]schema.GoldRow, 0, max(len(u.Gold), 8))
		}
		it.gold = append(it.gold[:0], u.Gold...)
		it.u.Gold = it.gold
	}
	select {
	case p.queue <- it:
	default:
		p.dropped.Add(1)
		p.items.Put(it)
	}
}

// Run publishes queued updates until ctx ends.
func (p *livePublisher) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-p.queue:
			p.send(it)
		}
	}
}

// send publishes it and recycles it.
func (p *livePublisher) send(it *liveItem) {
	defer p.items.Put(it)
	it.u.PublishedUS = p.now().UnixMicro()
	var err error
	p.buf, err = it.u.AppendJSON(p.buf[:0])
	if err == nil {
		err = p.publish(it.topic, p.buf)
	}
	if err != nil {
		if p.failed.Add(1)%1000 == 1 {
			p.log.Warn("publishing live update failed", "device", it.u.Device, "err", err)
		}
		return
	}
	p.published.Add(1)
}
