package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/schema"
)

type sent struct {
	topic   string
	payload []byte
}

// recorder is a publish func that keeps a copy of every message.
func recorder() (func(string, []byte) error, <-chan sent) {
	c := make(chan sent, 100)
	return func(topic string, payload []byte) error {
		c <- sent{topic, bytes.Clone(payload)}
		return nil
	}, c
}

func liveUpdate(dev string, ts int64) schema.LiveUpdate {
	return schema.LiveUpdate{Device: dev, NewestCaptureUS: ts, WatermarkUS: ts - 1_000_000,
		Silver: []schema.LiveSilver{{SilverRow: schema.SilverRow{Device: dev, WindowStart: ts - ts%1_000_000,
			WindowEnd: ts - ts%1_000_000 + 1_000_000, Count: 400, FreshCount: 400, TempAvg: 21.5, TempMin: 21, TempMax: 22,
			PressureAvg: schema.Float(101325.5), PressureMin: schema.Float(101325), PressureMax: schema.Float(101326), HumidityAvg: schema.Float(45.25), HumidityMin: schema.Float(45), HumidityMax: schema.Float(46)}}},
		Gold: []schema.GoldRow{{Device: dev, WindowStart: ts - ts%1_000_000, N: 8, Windows: 3, TempC: 21.5, PressurePa: schema.Float(101325.5), HumidityRH: schema.Float(45.25)}}}
}

func runLive(t *testing.T, p *livePublisher) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { p.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func receive(t *testing.T, c <-chan sent) sent {
	t.Helper()
	select {
	case s := <-c:
		return s
	case <-time.After(30 * time.Second): // liveness only: a broken build must not hang
		t.Fatal("no live update published")
	}
	return sent{}
}

// The stages reuse an update's slices as soon as Offer returns: what is
// published is what was offered, encoded as encoding/json would, on the
// device's topic, whatever the caller does with its slices afterwards.
func TestLivePublisherPublishesWhatWasOffered(t *testing.T) {
	publish, got := recorder()
	p := newLivePublisher(publish, slog.New(slog.DiscardHandler))
	p.now = func() time.Time { return time.UnixMicro(1_764_000_000_000_000) }

	var want []schema.LiveUpdate
	scratch := liveUpdate("pi-a", 0)
	for i, dev := range []string{"pi-a", "pi-b", "pi-a", "pi-c"} {
		u := liveUpdate(dev, int64(1_764_000_000_000_000+i*2_500_000))
		switch i {
		case 2:
			u.Gold = u.Gold[:0] // empty, not nil: []
		case 3:
			u.Silver, u.Gold = nil, nil // null
		}
		if u.Silver != nil {
			scratch.Silver = append(scratch.Silver[:0], u.Silver...)
			u.Silver = scratch.Silver
		}
		w := u // a deep copy, nil and empty slices kept apart
		if u.Silver != nil {
			w.Silver = append(make([]schema.LiveSilver, 0, len(u.Silver)), u.Silver...)
		}
		if u.Gold != nil {
			w.Gold = append(make([]schema.GoldRow, 0, len(u.Gold)), u.Gold...)
		}
		w.PublishedUS = 1_764_000_000_000_000
		want = append(want, w)
		p.Offer(u)
		scratch.Silver[0].TempAvg = -999 // the stages reuse the slice
	}
	runLive(t, p)
	for _, w := range want {
		s := receive(t, got)
		if s.topic != wire.LiveTopic(w.Device) {
			t.Errorf("published on %q, want %q", s.topic, wire.LiveTopic(w.Device))
		}
		wantJSON, err := json.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(s.payload, wantJSON) {
			t.Errorf("published\n %s\nwant\n %s", s.payload, wantJSON)
		}
		var u schema.LiveUpdate
		if err := json.Unmarshal(s.payload, &u); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(u, w) {
			t.Errorf("decoded %+v, want %+v", u, w)
		}
	}
	if n := p.published.Load(); n != uint64(len(want)) {
		t.Errorf("published counter %d, want %d", n, len(want))
	}
}

// Updates for topics nobody subscribes to are counted, not published.
func TestLivePublisherSkipsUnwatchedDevices(t *testing.T) {
	publish, got := recorder()
	p := newLivePublisher(publish, slog.New(slog.DiscardHandler))
	p.watch(func(topic string) bool { return topic == wire.LiveTopic("pi-watched") })
	p.Offer(liveUpdate("pi-unwatched", 1))
	p.Offer(liveUpdate("pi-watched", 2))
	runLive(t, p)
	if s := receive(t, got); s.topic != wire.LiveTopic("pi-watched") {
		t.Fatalf("published on %q", s.topic)
	}
	if n := p.unwatched.Load(); n != 1 {
		t.Errorf("unwatched %d, want 1", n)
	}
	if n := len(p.queue); n != 0 {
		t.Errorf("%d updates still queued", n)
	}
}

// A publisher that is behind drops (and counts) updates instead of blocking.
func TestLivePublisherDropsWhenBehind(t *testing.T) {
	publish, _ := recorder()
	p := newLivePublisher(publish, slog.New(slog.DiscardHandler))
	for i := range cap(p.queue) + 3 {
		p.Offer(liveUpdate("pi-a", int64(i)))
	}
	if n := p.dropped.Load(); n != 3 {
		t.Errorf("dropped %d, want 3", n)
	}
}

// BenchmarkLivePublisher is the live feed's cost per batch: Offer on the
// pipeline's goroutine, then encoding and publishing (to a no-op).
func BenchmarkLivePublisher(b *testing.B) {
	u := liveUpdate("pi-0042", 1_764_000_000_000_000)
	u.Silver = append(u.Silver, u.Silver[0])
	for range 5 {
		u.Gold = append(u.Gold, u.Gold[0])
	}
	p := newLivePublisher(func(string, []byte) error { return nil }, slog.New(slog.DiscardHandler))
	b.ReportAllocs()
	for b.Loop() {
		p.Offer(u)
		p.send(<-p.queue)
	}
}
