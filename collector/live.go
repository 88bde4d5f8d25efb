package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/schema"
)

// livePublisher publishes the stages' live updates without ever blocking
// them: Offer copies the update into a bounded queue, or drops and counts it
// when the publisher is behind.
type livePublisher struct {
	queue     chan schema.LiveUpdate
	publish   func(topic string, payload []byte) error
	now       func() time.Time
	log       *slog.Logger
	published atomic.Uint64
	dropped   atomic.Uint64
	failed    atomic.Uint64
}

func newLivePublisher(publish func(topic string, payload []byte) error, log *slog.Logger) *livePublisher {
	return &livePublisher{queue: make(chan schema.LiveUpdate, 4096), publish: publish, now: time.Now, log: log}
}

// Offer is stages.Options.Live: it runs on the pipeline's goroutine and the
// update's slices are reused after it returns, so it copies them.
func (p *livePublisher) Offer(u schema.LiveUpdate) {
	u.Silver = slices.Clone(u.Silver)
	u.Gold = slices.Clone(u.Gold)
	select {
	case p.queue <- u:
	default:
		p.dropped.Add(1)
	}
}

// Run publishes queued updates until ctx ends.
func (p *livePublisher) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case u := <-p.queue:
			u.PublishedUS = p.now().UnixMicro()
			js, err := json.Marshal(u)
			if err == nil {
				err = p.publish(wire.LiveTopic(u.Device), js)
			}
			if err != nil {
				if p.failed.Add(1)%1000 == 1 {
					p.log.Warn("publishing live update failed", "device", u.Device, "err", err)
				}
				continue
			}
			p.published.Add(1)
		}
	}
}
