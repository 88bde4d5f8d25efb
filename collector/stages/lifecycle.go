package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/pilake/pilake/collector/bronzeapp"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
)

// The landing lifecycle. landing/-seg/ is laid out by hour
// (landing.SegmentHourPrefix), and the stage state carries two positions:
//
//   - LandingFrom, the first hour that may hold a segment not processed
//     whole. Every earlier hour's segments are in bronze. The start-up scan
//     lists only the hours from there to now (never all of landing/), and
//     the committer moves it forward, an hour at a time, over hours at least
//     two hours old whose every segment the last committed epoch records as
//     processed whole.
//   - LandingKept, the first hour not deleted yet. An hour before
//     LandingFrom that ended more than LandingRetention ago is deleted, its
//     objects one by one (the Blob API has no prefix delete).

// forget drops the devices and streams nothing was received from for
// ForgetAfter (by the batches' receive time), at most every ForgetAfter/8:
// a device's open windows are finalised first (silver and gold get them),
// then its windows, watermark and gold history leave memory, the stage
// state and the watermark metric; a stream's set of batches in bronze
// leaves memory and the state. A device that comes back starts afresh
// (its gold averages over the windows since). Its old batches cannot come
// back as new ones: ForgetAfter is longer than MaxSkew plus the allowed
// lateness, so a reading that old is quarantined as skewed. After a
// restart every remembered device and stream counts as seen at the start.
func (r *runner) forget() {
	fa := r.opts.ForgetAfter.Microseconds()
	if fa <= 0 {
		return
	}
	now := r.opts.Clock.Now().UnixMicro()
	if now-r.forgotAt < fa/8 {
		return
	}
	r.forgotAt = now
	cutoff := now - fa
	var devs, streams int64
	for s := range r.landed {
		last, ok := r.streamSeen[s]
		if !ok {
			r.streamSeen[s] = now
		} else if last < cutoff {
			delete(r.landed, s)
			delete(r.ended, s)
			delete(r.streamSeen, s)
			streams++
		}
	}
	for _, id := range slices.Sorted(maps.Keys(r.f.devices)) {
		d := r.f.devices[id]
		last, ok := r.devSeen[id]
		if !ok {
			r.devSeen[id] = now
			continue
		}
		if last >= cutoff {
			continue
		}
		if d.MaxEvent != math.MinInt64 {
			r.f.closeBefore(id, d, floorDiv(d.MaxEvent, r.f.width)*r.f.width+r.f.width)
		}
		delete(r.f.devices, id)
		delete(r.devSeen, id)
		devs++
	}
	if devs+streams > 0 {
		r.dirty = true
		r.m.count(func(s *Stats) { s.DevicesForgotten += devs; s.StreamsForgotten += streams })
		r.log.Info("forgot devices and streams unseen for a while", slog.Int64("devices", devs), slog.Int64("streams", streams),
			slog.Duration("forget_after", r.opts.ForgetAfter))
	}
}

// hourOf truncates t to its UTC hour.
func hourOf(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// landingPositions is the lifecycle's part of the stage state.
type landingPositions struct {
	From time.Time // zero: unknown (the start-up scan lists all of landing/)
	Kept time.Time // zero: unknown
}

// scanLandingHours is the start-up and shutdown scan when the state has a
// position: the segments of the hours from it to the next hour. At
// shutdown (after the start-up scan) only the last two hours: what this
// process landed but did not submit is recent, and older segments of other
// collectors are found from the committed position at the next start.
func (r *runner) scanLandingHours(ctx context.Context) error {
	now := hourOf(r.opts.Clock.Now())
	from := r.landing.From
	if r.startScanned {
		from = now.Add(-2 * time.Hour)
	}
	r.startScanned = true
	if prev := now.Add(-time.Hour); prev.Before(from) {
		from = prev // a clock that went back
	}
	appended, err := bronzeapp.AppendedInstances(ctx, r.l)
	if err != nil {
		return fmt.Errorf("scanning landing: %w", err)
	}
	n := 0
	for h := from; !h.After(now.Add(time.Hour)); h = h.Add(time.Hour) {
		objs, err := r.l.List(ctx, landing.SegmentHourPrefix(h))
		if err != nil {
			return fmt.Errorf("scanning landing: %w", err)
		}
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
	}
	if n > 0 {
		r.log.Info("landed segments found in landing/ into bronze", slog.Int("batches", n), slog.Time("from", from))
	}
	return nil
}

// landingLifecycle moves the landing positions forward and deletes the
// hours past LandingRetention (see above). processed is the segment set of
// the epoch just committed. It runs on the committer's goroutine, at most
// every MaintenanceInterval; a failure is logged and retried next time.
func (c *committer) landingLifecycle(ctx context.Context, processed json.RawMessage) {
	if c.landing.From.IsZero() {
		return // set by the first epoch after a full start-up scan
	}
	now := c.opts.Clock.Now()
	var sets map[string]landing.SeqRanges
	if err := json.Unmarshal(processed, &sets); err != nil {
		c.log.Warn("landing lifecycle: reading the processed segments", slog.Any("err", err))
		return
	}
	// Bronze-appending collectors' segments are in bronze by their own
	// commits; the stages never take them in.
	appended, err := bronzeapp.AppendedInstances(ctx, c.l)
	if err != nil {
		c.log.Warn("landing lifecycle: reading the bronze-appending collectors", slog.Any("err", err))
		return
	}
	if c.landing.Kept.IsZero() {
		c.landing.Kept = c.landing.From
	}
	// At most two days of hours a round, so a round stays short after a
	// long stop; the next rounds go on.
	for i := 0; i < 48 && !c.landing.From.Add(2*time.Hour).After(now); i++ {
		objs, err := c.l.List(ctx, landing.SegmentHourPrefix(c.landing.From))
		if err != nil {
			c.log.Warn("landing lifecycle: listing", slog.Any("err", err))
			return
		}
		for _, o := range objs {
			inst, n, ok := landing.ParseSegmentName(o.Name)
			if ok && !sets[inst].Has(n) && !appended[inst] {
				return // not in bronze yet: the start-up scan takes it, or a scan of other collectors' segments
			}
		}
		c.landing.From = c.landing.From.Add(time.Hour)
	}
	if c.opts.LandingRetention <= 0 {
		return
	}
	deleted := 0
	for i := 0; i < 48 && c.landing.Kept.Before(c.landing.From) && !c.landing.Kept.Add(time.Hour+c.opts.LandingRetention).After(now); i++ {
		objs, err := c.l.List(ctx, landing.SegmentHourPrefix(c.landing.Kept))
		if err != nil {
			c.log.Warn("landing lifecycle: listing", slog.Any("err", err))
			return
		}
		for _, o := range objs {
			if err := c.l.Delete(ctx, o.Name); err != nil {
				c.log.Warn("landing lifecycle: deleting", slog.String("name", o.Name), slog.Any("err", err))
				return
			}
			deleted++
		}
		c.landing.Kept = c.landing.Kept.Add(time.Hour)
	}
	if deleted > 0 {
		c.m.count(func(s *Stats) { s.LandingExpired += int64(deleted) })
		c.log.Info("landing segments past retention deleted", slog.Int("objects", deleted), slog.Time("kept_from", c.landing.Kept))
	}
}

// oldestSegmentHour returns the hour of the oldest canonical segment name
// in objs, or the previous hour if there is none.
func oldestSegmentHour(objs []lake.Object, now time.Time) time.Time {
	oldest := hourOf(now).Add(-time.Hour)
	for _, o := range objs {
		if t, ok := landing.SegmentHour(o.Name); ok && t.Before(oldest) {
			oldest = t
		}
	}
	return oldest
}
