package stages

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/internal/clock"
)

// Options configure a Pipeline. Zero values get the defaults in brackets.
type Options struct {
	// Window is the silver tumbling window's width [1s].
	Window time.Duration
	// AllowedLateness: a device's watermark is its largest event time minus
	// this [10s]. Readings later than that go to silver_late.
	AllowedLateness time.Duration
	// MovingAverages are gold's moving-average lengths, in windows [8, 15, 60].
	MovingAverages []int
	// MaxSkew: readings whose capture time is more than this before or after
	// the batch's receive time are quarantined [24h]. Negative disables the
	// check and the clock policy (MaxAhead).
	MaxSkew time.Duration
	// MaxAhead: how far after its receive time a reading may be [2m]. A
	// batch from a synchronised clock beyond it is quarantined (it would
	// move the device's watermark ahead of time); one from an
	// unsynchronised clock is re-based from its monotonic offset (see
	// clockPolicy, which also corrects batches more than MaxSkew behind).
	// Negative disables the clock policy; so does a negative MaxSkew (no
	// time checks at all).
	MaxAhead time.Duration
	// CommitInterval is the longest time between epochs (Delta commits) [2s].
	CommitInterval time.Duration
	// MaxEpochRows cuts an epoch early when it holds this many readings [1<<20].
	MaxEpochRows int
	// GoldInterval is the longest time between gold commits [0: every
	// epoch; 1m on a lake whose gold is partitioned by device, its layout
	// before, where each gold commit writes a file per device]. Gold is
	// also committed when GoldMaxRows rows wait, and at shutdown. In
	// between, each epoch's gold rows are staged in one Parquet object under
	// _checkpoints/stages/gold/, so a restart loses none. (The live feed
	// carries gold at once; this only delays gold in the lake.)
	GoldInterval time.Duration
	// GoldMaxRows bounds the gold rows staged between gold commits [1<<20].
	GoldMaxRows int
	// QueueLen is how many submitted batches may wait before Submit blocks [256].
	QueueLen int
	// MaxPendingEpochs is how many cut epochs may wait for the committer
	// before folding stops [4]. Folding (and so the live feed) goes on while
	// a slow commit runs (a minute's gold commit, a Delta checkpoint, a
	// compaction, a lake that answers slowly); each waiting epoch holds its
	// encoded bronze file (up to MaxEpochRows readings) in memory.
	MaxPendingEpochs int
	// CompactEvery runs compaction of small files every this many epochs [30];
	// negative disables it. Compaction also runs at the first epoch after
	// each hour bucket closes (hh:10 by Now), so that closed hours are
	// compacted within the hour whatever the epoch length.
	CompactEvery int
	// VacuumRetention is the delta.deletedFileRetentionDuration written into
	// new tables (and tables without it) [48h]: how long a removed file's
	// tombstone is kept and when vacuum deletes the data files no longer in
	// the table (compacted away, or written by an epoch that never
	// committed). The table's property is what counts: change it there
	// (ALTER TABLE ... SET TBLPROPERTIES) for an existing table. Negative
	// disables vacuum.
	VacuumRetention time.Duration
	// LogRetention is the delta.logRetentionDuration written into new
	// tables [72h]: Delta log commits and checkpoints older than the table's
	// value and covered by a newer checkpoint are deleted at vacuum time.
	// Negative disables log cleanup.
	LogRetention time.Duration
	// CheckpointInterval is the delta.checkpointInterval written into new
	// tables [100]: the fewest commits between Delta checkpoints. A
	// checkpoint also waits until the commits since the last one weigh as
	// many bytes as it, unless the last is older than CheckpointMaxAge.
	CheckpointInterval int
	// CheckpointMaxAge: a table whose last checkpoint is older than this
	// gets one at its next commit [6h], so that a table whose checkpoint is
	// large (many tombstones) and whose commits are small still gets one.
	CheckpointMaxAge time.Duration
	// CheckpointPolicy is the checkpoint kind of the tables the stages
	// create [delta.CheckpointV2]: V2-spec checkpoints whose sidecars later
	// checkpoints reuse, so a checkpoint writes what changed, not the
	// table's history (readers: Delta Lake 3.x, Databricks Runtime 13.3
	// LTS+, delta-kernel-rs and what is built on it); delta.CheckpointClassic
	// for V1-spec checkpoints every Delta reader reads. Existing tables keep
	// their own (their protocol and delta.checkpointPolicy).
	CheckpointPolicy string
	// MaintenanceInterval is how often (by Now) the landing lifecycle runs,
	// after a compaction round [1h].
	MaintenanceInterval time.Duration
	// LogCleanupInterval is how often Delta log cleanup runs, at a
	// maintenance round [6h]. A cleanup lists the table's whole log (its
	// retention's commits and their checksum files: 260 k objects a table
	// at one commit every 2 s and 72 h), so it runs a few times a day: log
	// entries stay up to this long past their retention.
	LogCleanupInterval time.Duration
	// UpkeepLock, if set, is held while the stages compact and maintain
	// their tables after an epoch. A collector that also runs the rollup
	// tiers passes the same lock to rollup.Options.UpkeepLock, so the two
	// never hold their working sets (the pages they read, the file they
	// write) at once: the heap's peak is the larger of them, not their sum.
	UpkeepLock sync.Locker
	// VacuumInterval is how often vacuum runs, at a maintenance round [6h].
	// Vacuum lists every file of a table (live files grow with the
	// history), so it runs less often than the rest: removed files stay
	// up to this long past their retention.
	VacuumInterval time.Duration
	// LandingRetention: landing segments are deleted, a whole hour prefix
	// at a time, once the hour is older than this and bronze holds every
	// batch in it [168h; negative: kept forever].
	LandingRetention time.Duration
	// ForgetAfter: a device, or a stream (device and boot), nothing was
	// received from for this long leaves memory, the stage state and the
	// watermark metric [48h, or twice MaxSkew plus AllowedLateness if
	// longer]. It must be longer than MaxSkew plus AllowedLateness.
	// Negative, or the skew check off (MaxSkew negative): never, since a
	// batch older than its device's forgotten state could then come in twice.
	ForgetAfter time.Duration
	// ShutdownTimeout bounds the final flush and commit after Run's context
	// ends [30s].
	ShutdownTimeout time.Duration
	// ScanInterval is how often Run looks for landing segments that other
	// collectors (ingest-only ones, `--stages=false`, sharing the MQTT load)
	// wrote in the last hours [30s]; negative: only at start and shutdown.
	// Batches submitted by this process's Lander need no scan.
	ScanInterval time.Duration
	// LocalInstance is this process's Lander instance: the periodic scan
	// skips its segments (their batches are submitted directly).
	LocalInstance string
	// KeepOpenOnStop makes a clean stop (Run's context ends) keep the open
	// windows in the stage state instead of finalising them: the next start
	// goes on with them (as after a crash), so readings that come after a
	// restart for windows open at the stop (a backlog, the rest of a
	// window whose batches were in flight) go into silver, not
	// silver_late. Windows of streams that ended (their last batch,
	// wire.FlagLast, and every batch before it processed) are final
	// already. Off: every open window is finalised at a clean stop.
	KeepOpenOnStop bool
	// SkipShutdownScan disables the scan of landing/ before the final commit
	// (which lands objects that were written but never submitted).
	SkipShutdownScan bool
	// CompatibleBronze writes bronze's timestamps PLAIN instead of
	// DELTA_BINARY_PACKED, for Parquet readers that lack that encoding
	// (Spark 3.3+, Databricks, DuckDB and pyarrow have it). Without it,
	// bronze already holds only what Spark 3.3+ decodes: DataPageV1,
	// PLAIN, dictionary and DELTA_BINARY_PACKED.
	CompatibleBronze bool
	// RefusedRetry is how long the stages wait before trying again when a
	// table asks what pilake cannot honour (delta.ErrUnsupported: a table
	// feature or property another writer enabled; delta.ErrConstraint: rows
	// a CHECK constraint does not accept) [1m]. Meanwhile the epochs wait:
	// their batches stay in landing/, nothing acknowledged is lost, and the
	// process keeps running (no crash loop).
	RefusedRetry time.Duration
	// RetryBackoff is the first wait before retrying a failed lake operation
	// (commits, recovery); it doubles up to 10 s [100ms].
	RetryBackoff time.Duration
	// Logger receives the pipeline's logs [slog.Default()].
	Logger *slog.Logger
	// Live, if set, is called after each batch is folded with the windows it
	// touched (provisional, or final if the batch finalised them) and their
	// gold rows. It runs on the pipeline's goroutine: it must not block. The
	// update's slices are reused after it returns.
	Live func(schema.LiveUpdate)
	// Release, if set, is called with each submitted batch once the
	// pipeline no longer reads it or its readings (e.g.
	// landing.ReleaseBatch, which recycles them). Batches held for
	// quarantine are not released.
	Release func(*wire.Batch)
	// Clock tells the time: receive-time checks, the landing lifecycle,
	// forgetting, gold's interval, commit timestamps [clock.Real]. Tests
	// pass a clock.Fake. Waits (the commit and scan intervals, retries) use
	// real timers.
	Clock clock.Clock
}

// Defaults of Options.
const (
	DefaultWindow          = time.Second
	DefaultAllowedLateness = 10 * time.Second
	DefaultMaxSkew         = 24 * time.Hour
	DefaultMaxAhead        = 2 * time.Minute
	DefaultCommitInterval  = 2 * time.Second

	DefaultVacuumRetention    = 48 * time.Hour
	DefaultLogRetention       = 72 * time.Hour
	DefaultCheckpointInterval = 100
	DefaultLandingRetention   = 7 * 24 * time.Hour
	DefaultForgetAfter        = 48 * time.Hour
)

// DefaultMovingAverages are gold's default moving-average lengths.
var DefaultMovingAverages = []int{8, 15, 60}

// TableOptions are the delta.Options of the tables the stages write
// (partition columns aside): retention written as table properties,
// checkpoints by size and age of the policy chosen, on the stages' clock.
// Other writers of the same lake (collector/rollup) use them too, so that
// every table pilake keeps is bounded the same way.
func (o Options) TableOptions() delta.Options {
	o = o.withDefaults()
	props := delta.Retention{CheckpointInterval: o.CheckpointInterval,
		DeletedFiles: max(0, o.VacuumRetention), Log: max(0, o.LogRetention)}.Properties()
	return delta.Options{CheckpointInterval: o.CheckpointInterval, Now: o.Clock.Now,
		Properties: props, CheckpointBySize: true, CheckpointMaxAge: o.CheckpointMaxAge, CheckpointPolicy: o.CheckpointPolicy}
}

func (o Options) withDefaults() Options {
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.AllowedLateness == 0 {
		o.AllowedLateness = DefaultAllowedLateness
	}
	if o.MovingAverages == nil {
		o.MovingAverages = DefaultMovingAverages
	}
	o.MovingAverages = slices.Clone(o.MovingAverages)
	slices.Sort(o.MovingAverages)
	o.MovingAverages = slices.Compact(o.MovingAverages)
	if o.MaxSkew == 0 {
		o.MaxSkew = DefaultMaxSkew
	}
	if o.MaxAhead == 0 {
		o.MaxAhead = DefaultMaxAhead
	}
	if o.ScanInterval == 0 {
		o.ScanInterval = 30 * time.Second
	}
	if o.CommitInterval == 0 {
		o.CommitInterval = DefaultCommitInterval
	}
	if o.MaxEpochRows == 0 {
		o.MaxEpochRows = 1 << 20
	}
	if o.GoldMaxRows == 0 {
		o.GoldMaxRows = 1 << 20
	}
	if o.QueueLen == 0 {
		o.QueueLen = 256
	}
	if o.MaxPendingEpochs == 0 {
		o.MaxPendingEpochs = 4
	}
	if o.CompactEvery == 0 {
		o.CompactEvery = 30
	}
	if o.VacuumRetention == 0 {
		o.VacuumRetention = DefaultVacuumRetention
	}
	if o.LogRetention == 0 {
		o.LogRetention = DefaultLogRetention
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	if o.CheckpointMaxAge == 0 {
		o.CheckpointMaxAge = 6 * time.Hour
	}
	if o.CheckpointPolicy == "" {
		o.CheckpointPolicy = delta.CheckpointV2
	}
	if o.MaintenanceInterval == 0 {
		o.MaintenanceInterval = time.Hour
	}
	if o.VacuumInterval == 0 {
		o.VacuumInterval = 6 * time.Hour
	}
	if o.LogCleanupInterval == 0 {
		o.LogCleanupInterval = 6 * time.Hour
	}
	if o.LandingRetention == 0 {
		o.LandingRetention = DefaultLandingRetention
	}
	if o.ForgetAfter == 0 {
		o.ForgetAfter = max(DefaultForgetAfter, 2*(o.MaxSkew+o.AllowedLateness))
	}
	if o.MaxSkew < 0 {
		o.ForgetAfter = -1 // without the skew check, forgetting could let old batches in twice
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	if o.RefusedRetry <= 0 {
		o.RefusedRetry = time.Minute
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 100 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clock.Real
	}
	if o.Release == nil {
		o.Release = func(*wire.Batch) {}
	}
	return o
}

// Validate reports options a user must fix.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if o.Window < time.Millisecond || o.Window%time.Microsecond != 0 {
		errs = append(errs, fmt.Errorf("window %v: want at least 1ms, in whole microseconds", o.Window))
	}
	if o.AllowedLateness < 0 || o.AllowedLateness%time.Microsecond != 0 {
		errs = append(errs, fmt.Errorf("allowed lateness %v: want zero or more, in whole microseconds", o.AllowedLateness))
	}
	for _, n := range o.MovingAverages {
		if n < 1 || n > 10000 {
			errs = append(errs, fmt.Errorf("moving average length %d: want 1-10000 windows", n))
		}
	}
	if o.CommitInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("commit interval %v: want at least 10ms", o.CommitInterval))
	}
	if o.VacuumRetention > 0 && o.VacuumRetention < time.Hour {
		errs = append(errs, fmt.Errorf("vacuum retention %v: want at least 1h (or negative to disable)", o.VacuumRetention))
	}
	if o.LogRetention > 0 && o.LogRetention < time.Hour {
		errs = append(errs, fmt.Errorf("log retention %v: want at least 1h (or negative to disable)", o.LogRetention))
	}
	if o.ForgetAfter > 0 && o.ForgetAfter <= o.MaxSkew+o.AllowedLateness {
		errs = append(errs, fmt.Errorf("forget after %v: want more than max skew %v plus allowed lateness %v (or negative to never forget)",
			o.ForgetAfter, o.MaxSkew, o.AllowedLateness))
	}
	if o.LandingRetention > 0 && o.LandingRetention < 3*time.Hour {
		errs = append(errs, fmt.Errorf("landing retention %v: want at least 3h (or negative to keep landing/ forever)", o.LandingRetention))
	}
	if o.MaxEpochRows < 1 || o.QueueLen < 1 || o.MaxPendingEpochs < 1 {
		errs = append(errs, errors.New("max epoch rows, queue length and max pending epochs must be positive"))
	}
	return errors.Join(errs...)
}
