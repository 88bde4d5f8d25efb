package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/bronzeapp"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
)

// scanLanding lands into bronze every batch in landing/ not yet in it: the
// batches of the segments not processed whole, in name order.
//
// With a landing position in the state (see lifecycle.go) it lists only the
// hours of segments from that position on; without one (a new lake, or one
// from a version without it) all of landing/-seg/, once.
func (r *runner) scanLanding(ctx context.Context) error {
	if !r.landing.From.IsZero() {
		return r.scanLandingHours(ctx)
	}
	objs, err := r.l.List(ctx, landing.SegmentDir)
	if err != nil {
		return fmt.Errorf("scanning landing: %w", err)
	}
	appended, err := bronzeapp.AppendedInstances(ctx, r.l)
	if err != nil {
		return fmt.Errorf("scanning landing: %w", err)
	}
	defer func() {
		if ctx.Err() == nil {
			r.landingHint = oldestSegmentHour(objs, r.opts.Clock.Now())
			r.landing.From = r.landingHint
			r.startScanned = true
		}
	}()
	n := 0
	for _, o := range objs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if inst, _, ok := landing.ParseSegmentName(o.Name); ok && appended[inst] {
			continue // a bronze-appending collector's: in bronze already
		}
		k, err := r.scanSegment(ctx, o)
		if err != nil {
			return err
		}
		n += k
	}
	if n > 0 {
		r.log.Info("landed segments found in landing/ into bronze", slog.Int("batches", n))
	}
	return nil
}

// scanner finds, every ScanInterval, the segments other Landers wrote in the
// previous, current and next hour (by this clock; the next for a writer
// whose clock is ahead) that are not processed whole, reads them, and hands
// them to the runner: ingest-only collectors sharing the MQTT load. Older
// ones are found by the scan at the next start. It does the lake I/O on its
// own goroutine so that folding and the live feed never wait for it.
type scanner struct {
	l    lake.Lake
	opts Options
	log  *slog.Logger
	done func(inst string, n uint64) bool // whether a segment is processed whole (the runner's)
}

// segmentObject is a segment the scanner read.
type segmentObject struct {
	obj  lake.Object
	data []byte
}

// run scans every ScanInterval until ctx ends.
func (s *scanner) run(ctx context.Context, out chan<- segmentObject) {
	t := time.NewTicker(s.opts.ScanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.scanRecent(ctx, out); err != nil && ctx.Err() == nil {
			s.log.Warn("scanning landing for other collectors' segments", slog.Any("err", err))
		}
	}
}

func (s *scanner) scanRecent(ctx context.Context, out chan<- segmentObject) error {
	now := s.opts.Clock.Now()
	n := 0
	// Collectors that append bronze themselves (collector/bronzeapp): their
	// batches are in bronze already.
	appended, err := bronzeapp.AppendedInstances(ctx, s.l)
	if err != nil {
		return fmt.Errorf("scanning landing: %w", err)
	}
	for _, t := range []time.Time{now.Add(-time.Hour), now, now.Add(time.Hour)} {
		objs, err := s.l.List(ctx, landing.SegmentHourPrefix(t))
		if err != nil {
			return fmt.Errorf("scanning landing: %w", err)
		}
		for _, o := range objs {
			inst, counter, ok := landing.ParseSegmentName(o.Name)
			if ok && inst == s.opts.LocalInstance || ok && s.done(inst, counter) || ok && appended[inst] {
				continue
			}
			var data []byte
			if ok {
				if data, err = s.l.Get(ctx, o.Name); err != nil {
					return fmt.Errorf("scanning landing: %w", err)
				}
			}
			select {
			case out <- segmentObject{obj: o, data: data}:
				n++
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if n > 0 {
		s.log.Debug("segments from other collectors read for bronze", slog.Int("segments", n))
	}
	return nil
}

// scanSegment processes the batches of segment o not yet in bronze (see
// takeSegment), reading it unless it is processed whole already.
func (r *runner) scanSegment(ctx context.Context, o lake.Object) (int, error) {
	inst, counter, ok := landing.ParseSegmentName(o.Name)
	if !ok {
		return r.takeSegment(o, nil)
	}
	if r.segments[inst].Has(counter) {
		return 0, nil
	}
	data, err := r.l.Get(ctx, o.Name)
	if err != nil {
		return 0, fmt.Errorf("scanning landing: %w", err)
	}
	return r.takeSegment(o, data)
}

// takeSegment processes the batches of segment o (its content data) not yet
// in bronze, with their recorded receive time and source, and records the
// segment as processed. A record that cannot be read, and the rest of a
// segment after damage, are quarantined; the good records are kept.
func (r *runner) takeSegment(o lake.Object, data []byte) (int, error) {
	inst, counter, ok := landing.ParseSegmentName(o.Name)
	if !ok {
		r.log.Warn("ignoring object in landing/", slog.String("name", o.Name), slog.String("err", "not a segment name"))
		return 0, nil
	}
	if r.segments[inst].Has(counter) {
		return 0, nil
	}
	recs, derr := landing.DecodeSegment(data)
	n := 0
	for i, rec := range recs {
		b := &wire.Batch{}
		if err := wire.Decode(rec.Payload, b); err != nil {
			r.quar = append(r.quar, quarantined{name: fmt.Sprintf("%s@record-%d", o.Name, i), raw: bytes.Clone(rec.Payload), recv: rec.ReceivedAt,
				source: "landing", reason: fmt.Sprintf("decoding record %d of segment %s: %v", i, o.Name, err)})
			r.m.count(func(s *Stats) { s.QuarantinedFiles++ })
			r.dirty = true
			continue
		}
		if r.landed[batchStream(b)].Has(b.Seq) {
			continue
		}
		src := rec.Source
		if src == "" {
			src = "recovered"
		}
		r.process(landing.Landed{Name: o.Name, Batch: b, ReceivedAt: rec.ReceivedAt, Source: src})
		n++
		if err := r.cutIfFull(); err != nil {
			return n, err
		}
	}
	if derr != nil {
		var se *landing.SegmentError
		tail := 0
		if errors.As(derr, &se) {
			tail = se.Offset
		}
		r.quar = append(r.quar, quarantined{name: fmt.Sprintf("%s@offset-%d", o.Name, tail), raw: bytes.Clone(data[tail:]), recv: o.ModTime,
			source: "landing", reason: fmt.Sprintf("reading segment %s: %v (%d records before it kept)", o.Name, derr, len(recs))})
		r.m.count(func(s *Stats) { s.QuarantinedFiles++ })
		r.log.Warn("damaged segment in landing/: quarantined its unreadable part", slog.String("name", o.Name), slog.Any("err", derr))
	}
	r.segmentDone(o.Name, inst, counter)
	return n, nil
}
