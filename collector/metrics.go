package main

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pilake/pilake/collector/broker"
	"github.com/pilake/pilake/collector/bronzeapp"
	"github.com/pilake/pilake/collector/ingest"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/stages"
)

// collector exposes the collector's counters to Prometheus, read at scrape
// time from the parts that keep them (no double bookkeeping).
type collector struct {
	lander      *landing.Lander
	pipeline    *stages.Pipeline
	live        *livePublisher
	lakeRetries func() uint64
	routing     func() (files, records, quarantined uint64)
	rate        func() float64
	broker      func() *broker.Broker // nil, or returning nil: no embedded broker (yet)
	hostRefused func() uint64
	acker       *ingest.Acker // nil with the embedded broker
	// appender, when set (--bronze-append), appends bronze instead of the
	// stages: the bronze, epoch, commit and skew metrics are its.
	appender *bronzeapp.Appender
	// routingLimited counts IoT Hub routing files quarantined for a limit.
	routingLimited func() uint64

	batches, readings, bytes, duplicates, lakeErrors, lag                                   *prometheus.Desc
	quarantined, bronzeReadings, bronzeBatches, late, silverRows, goldRows                  *prometheus.Desc
	clockCorrected, aheadReadings, acksSent, missing                                        *prometheus.Desc
	readingsPerSec, limited                                                                 *prometheus.Desc
	syncs, syncSeconds, segments                                                            *prometheus.Desc
	epochs, commitRetries, lastCommit, watermark, liveUpdates, routingFiles, routingRecords *prometheus.Desc
	refusals, refusing, compactSkipped, commitSeconds, commitConflicts                      *prometheus.Desc
	compacted, vacuumed, landingExpired, forgotten                                          *prometheus.Desc
}

// withAcker makes c export a's counters (a may be nil).
func (c *collector) withAcker(a *ingest.Acker) *collector {
	c.acker = a
	return c
}

func newCollector(l *landing.Lander, p *stages.Pipeline, live *livePublisher, lakeRetries func() uint64,
	routing func() (uint64, uint64, uint64), rate func() float64, brk func() *broker.Broker, hostRefused func() uint64) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("pilake_collector_"+name, help, labels, nil)
	}
	return &collector{
		lander: l, pipeline: p, live: live, lakeRetries: lakeRetries, routing: routing, rate: rate, broker: brk, hostRefused: hostRefused,
		limited: d("limited_total", "Inputs refused or dropped by a limit or policy: auth (CONNECT refused), acl, "+
			"connections (total cap), connections_per_source, retained (not retained), quarantine (rejected input dropped without a record), "+
			"host (HTTP request with an unknown Host header), new_devices (batch of a new device id beyond the rate; not acknowledged), routing_file (IoT Hub routing file beyond a size, block or map limit).", "limit"),
		readingsPerSec: d("readings_per_second", "Readings landed per second, averaged over the last 10 s."),
		batches:        d("batches_in_total", "Batches landed in landing/ (redeliveries not counted)."),
		readings:       d("readings_in_total", "Readings in landed batches; rate() gives readings/s."),
		bytes:          d("bytes_in_total", "Bytes of landed batches."),
		duplicates:     d("duplicates_total", "Redeliveries of batches this process had landed (not written again)."),
		segments:       d("landing_segments_total", "Landing segments (objects of many batches) written durably."),
		lakeErrors:     d("lake_errors_total", "Lake operations that failed: landing writes not acknowledged, retried Azure requests, failed epoch commits, Delta version checksum files not written.", "kind"),
		lag:            d("ingest_lag_seconds", "Receive time minus capture time of the newest reading in the last landed batch."),
		quarantined:    d("quarantined_total", "Inputs set aside in _quarantine/, by kind.", "kind"),
		bronzeReadings: d("bronze_readings_total", "Readings committed to bronze."),
		bronzeBatches:  d("bronze_batches_total", "Batches folded into bronze."),
		late:           d("late_readings_total", "Readings whose window was already final (sent to silver_late)."),
		clockCorrected: d("clock_corrected_batches_total", "Batches re-based from their monotonic offset (a device clock that was wrong or stepped)."),
		aheadReadings:  d("ahead_readings_total", "Readings quarantined for being more than --max-ahead after their receive time (also in quarantined_total{kind=\"skew\"})."),
		missing:        d("missing_batches", "Per device, batches missing from bronze between its first and last processed of each boot (ranges at /healthz/gaps).", "device"),
		acksSent:       d("landing_acks_total", "Landing acknowledgements published to agents behind an external broker, by outcome.", "outcome"),
		silverRows:     d("silver_rows_total", "Final silver windows written."),
		goldRows:       d("gold_rows_total", "Gold rows written."),
		syncs:          d("landing_syncs_total", "Group-commit rounds (one syncfs each) making landing writes durable."),
		refusals: d("table_refusals_total", "Commits (or start-ups) refused because a Delta table asks what pilake cannot honour "+
			"(a table feature or property another writer enabled, rows a CHECK constraint does not accept); the batches wait in landing/."),
		refusing:       d("table_refusing", "1 while the stages wait because a table asks what pilake cannot honour (see the log)."),
		compactSkipped: d("compaction_skipped_total", "Data files compaction left alone because it cannot rewrite them exactly (deletion vectors)."),
		syncSeconds:    d("landing_sync_seconds_total", "Time spent in landing group-commit rounds."),
		epochs:         d("epochs_total", "Epochs (Delta commits across tables) committed."),
		compacted:      d("compacted_files_total", "Small data files compaction replaced (by hour and day files)."),
		vacuumed:       d("vacuumed_files_total", "Data files vacuum deleted (past the tables' delta.deletedFileRetentionDuration)."),
		landingExpired: d("landing_expired_total", "landing/ segments deleted after --landing-retention, once in bronze."),
		forgotten:      d("forgotten_total", "Devices, and streams (device and boot), forgotten after --forget-after; what is the stages' or the Lander's.", "what"),
		commitRetries:  d("commit_retries_total", "Failed epoch commit attempts."),
		commitSeconds: d("bronze_commit_seconds", "With --bronze-append: time from preparing a bronze commit (file, state) to its Delta commit, "+
			"retries included."),
		commitConflicts: d("commit_conflicts_total", "With --bronze-append: bronze commits that lost the race for a version to another writer "+
			"(another collector) and were retried at the next version."),
		lastCommit:     d("last_commit_timestamp_seconds", "Unix time of the last epoch commit."),
		watermark:      d("watermark_timestamp_seconds", "Per-device watermark: windows ending at or before it are final.", "device"),
		liveUpdates:    d("live_updates_total", "Live updates by outcome.", "outcome"),
		routingFiles:   d("iothub_files_total", "IoT Hub routing files processed."),
		routingRecords: d("iothub_records_total", "IoT Hub routing records handled."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	s := c.lander.Stats()
	counter(c.batches, float64(s.Batches.Load()))
	counter(c.readings, float64(s.Readings.Load()))
	counter(c.bytes, float64(s.Bytes.Load()))
	counter(c.duplicates, float64(s.Duplicates.Load()))
	counter(c.segments, float64(s.Segments.Load()))
	gauge(c.lag, float64(s.LastLagUS.Load())/1e6)
	if c.rate != nil {
		gauge(c.readingsPerSec, c.rate())
	}
	counter(c.limited, float64(s.QuarantineDropped.Load()), "quarantine")
	counter(c.limited, float64(s.NewDeviceRefused.Load()), "new_devices")
	if c.routingLimited != nil {
		counter(c.limited, float64(c.routingLimited()), "routing_file")
	}
	if c.hostRefused != nil {
		counter(c.limited, float64(c.hostRefused()), "host")
	}
	if c.broker != nil {
		if b := c.broker(); b != nil {
			bs := b.Stats()
			counter(c.limited, float64(bs.AuthFailures.Load()), "auth")
			counter(c.limited, float64(bs.ACLDenied.Load()), "acl")
			counter(c.limited, float64(bs.ConnRefusedTotal.Load()), "connections")
			counter(c.limited, float64(bs.ConnRefusedSource.Load()), "connections_per_source")
			counter(c.limited, float64(bs.RetainRefused.Load()), "retained")
		}
	}
	counter(c.syncs, float64(s.Syncs.Load()))
	counter(c.syncSeconds, float64(s.SyncNanos.Load())/1e9)
	counter(c.lakeErrors, float64(s.LakeErrors.Load()), "landing")
	if c.lakeRetries != nil {
		counter(c.lakeErrors, float64(c.lakeRetries()), "retried")
	}
	ps := c.pipeline.Stats()
	if c.appender != nil {
		// Bronze-append mode: the stages do not run; bronze is the appender's.
		as := c.appender.Stats()
		ps.Batches, ps.Readings, ps.Duplicates, ps.Epochs = as.Batches, as.Readings, as.Duplicates, as.Epochs
		ps.Quarantined, ps.Ahead, ps.CommitRetries, ps.LastCommit = as.Quarantined, as.Ahead, as.CommitRetries, as.LastCommit
		ps.ChecksumErrors = as.ChecksumErrors
		counter(c.commitConflicts, float64(as.Conflicts))
		h := as.CommitSeconds
		buckets := make(map[float64]uint64, len(h.Bounds))
		for i, b := range h.Bounds {
			buckets[b] = h.Counts[i]
		}
		ch <- prometheus.MustNewConstHistogram(c.commitSeconds, h.Count, h.Sum, buckets)
	}
	counter(c.lakeErrors, float64(ps.CommitRetries), "commit")
	counter(c.lakeErrors, float64(ps.ChecksumErrors), "checksum")
	for _, k := range landing.Kinds {
		v := s.Quarantined(k)
		if k == landing.KindSkew {
			v += uint64(ps.Quarantined)
		}
		if k == landing.KindCorrupt {
			v += uint64(ps.QuarantinedFiles)
		}
		counter(c.quarantined, float64(v), k)
	}
	counter(c.bronzeReadings, float64(ps.Readings))
	counter(c.bronzeBatches, float64(ps.Batches))
	counter(c.late, float64(ps.Late))
	counter(c.clockCorrected, float64(ps.ClockCorrected))
	counter(c.aheadReadings, float64(ps.Ahead))
	if c.acker != nil {
		counter(c.acksSent, float64(c.acker.Sent()), "sent")
		counter(c.acksSent, float64(c.acker.Failed()), "failed")
		counter(c.acksSent, float64(c.acker.ResendRequests()), "resend_request")
	}
	counter(c.silverRows, float64(ps.SilverRows))
	counter(c.goldRows, float64(ps.GoldRows))
	counter(c.epochs, float64(ps.Epochs))
	counter(c.compacted, float64(ps.Compactions))
	counter(c.vacuumed, float64(ps.Vacuumed))
	counter(c.landingExpired, float64(ps.LandingExpired))
	counter(c.forgotten, float64(ps.DevicesForgotten), "devices")
	counter(c.forgotten, float64(ps.StreamsForgotten), "streams")
	counter(c.forgotten, float64(s.Forgotten.Load()), "lander_streams")
	counter(c.commitRetries, float64(ps.CommitRetries))
	counter(c.refusals, float64(ps.Refusals))
	counter(c.compactSkipped, float64(ps.CompactSkipped))
	if ps.Refusing {
		gauge(c.refusing, 1)
	} else {
		gauge(c.refusing, 0)
	}
	if !ps.LastCommit.IsZero() {
		gauge(c.lastCommit, float64(ps.LastCommit.UnixNano())/1e9)
	}
	missing := map[string]uint64{}
	for stream, rs := range c.pipeline.Gaps() {
		dev, _, _ := strings.Cut(stream, "/")
		for _, r := range rs {
			missing[dev] += r[1] - r[0] + 1
		}
	}
	for dev, n := range missing {
		gauge(c.missing, float64(n), dev)
	}
	for dev, wm := range c.pipeline.Watermarks() {
		gauge(c.watermark, float64(wm)/1e6, dev)
	}
	if c.live != nil {
		counter(c.liveUpdates, float64(c.live.published.Load()), "published")
		counter(c.liveUpdates, float64(c.live.dropped.Load()), "dropped")
		counter(c.liveUpdates, float64(c.live.failed.Load()), "failed")
		counter(c.liveUpdates, float64(c.live.unwatched.Load()), "unwatched")
	}
	if c.routing != nil {
		f, r, _ := c.routing()
		counter(c.routingFiles, float64(f))
		counter(c.routingRecords, float64(r))
	}
}

// rateMeter turns a counter into a per-second rate over a sliding window.
type rateMeter struct {
	read    func() uint64
	mu      sync.Mutex
	samples []rateSample // oldest first, at most 11 (10 s at 1 s ticks)
}

type rateSample struct {
	at time.Time
	v  uint64
}

func newRateMeter(read func() uint64) *rateMeter { return &rateMeter{read: read} }

func (m *rateMeter) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	m.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.sample(now)
		}
	}
}

func (m *rateMeter) sample(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples = append(m.samples, rateSample{now, m.read()})
	if len(m.samples) > 11 {
		m.samples = m.samples[1:]
	}
}

func (m *rateMeter) perSecond() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.samples) < 2 {
		return 0
	}
	a, b := m.samples[0], m.samples[len(m.samples)-1]
	dt := b.at.Sub(a.at).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(b.v-a.v) / dt
}
