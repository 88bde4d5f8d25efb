// Package stages turns landed telemetry batches into the lake's Delta tables:
// bronze (a row per reading, exactly once per batch), silver
// (per-device tumbling event-time windows, final when the device's watermark
// passes), silver_late (readings whose window was already final) and gold
// (per-device moving averages over the last N final silver windows).
//
// # Windows and watermarks
//
// A reading at event time t belongs to the window [floor(t/W)·W, +W) of its
// device (W = Options.Window, default 1 s). Each device has its own
// watermark: the largest event time seen from it minus Options.AllowedLateness
// (default 10 s), advanced after each batch. A window is final once its end is
// at or before the watermark; its silver row is then appended, and a reading
// that later falls into a final window goes to silver_late (kept, counted),
// never into silver. Sums are kept in the sensor's integer fixed-point units,
// so a window's aggregate does not depend on the order its readings arrived
// in: the same input in any order whose lateness stays within the allowed
// lateness gives the same final silver.
//
// A device's stream (device and boot) that ends (its last batch carries
// wire.FlagLast: the agent stopped cleanly) has its windows finalised as
// soon as every batch of it up to that one is processed; nothing more comes
// for them. A clean shutdown (Run's context ends) finalises every other open
// window too, unless Options.KeepOpenOnStop: then those stay open in the
// stage state and the next start goes on with them, as after a crash, so a
// restart sends nothing to silver_late. Either way the lead's end-to-end
// check sum(silver.count) == count(bronze) holds after the agents and then
// the collector stop cleanly. Without KeepOpenOnStop, readings that come
// after a restart for windows closed at the stop go to silver_late.
//
// # Gold
//
// For each final silver window and each N in Options.MovingAverages (default
// 8, 15, 60), a gold row holds the averages of the window-average
// temperature, pressure and humidity over the device's last N final windows
// (fewer at the start of its history: GoldRow.Windows says how many) — the
// SQL `AVG(x) OVER (PARTITION BY device ORDER BY window_start ROWS BETWEEN
// N-1 PRECEDING AND CURRENT ROW)`. Gold is committed with every epoch, one
// file a commit clustered by time (rows in window_start, device, n order; no
// partitions), so it is as fresh as silver; a lake whose gold was created
// partitioned by device keeps that layout and its commits every
// GoldInterval (1 min), a file per device each.
//
// # Exactly once and restarts
//
// Work is cut into epochs (every Options.CommitInterval, or MaxEpochRows
// readings). An epoch's Parquet files are written first (and synced), then
// the stage state: `_checkpoints/stages/{epoch:020d}.devices` (every
// device's watermark, open windows and gold history, binary) and
// `{epoch:020d}.json` (the batches in bronze as per-stream sequence
// ranges, the landing segments processed whole as per-Lander-instance
// ranges of segment counters, the add actions of the epoch's silver, silver_late and gold
// files, and the gold rows staged since the last gold commit), then the
// bronze commit carrying the Delta txn action {appId: "pilake-stages",
// version: epoch} — the epoch's atomic point — and then the silver,
// silver_late and gold commits with the same txn.
//
// On start, the pipeline reads bronze's txn version E, loads the state of
// epoch E, completes any of the other tables' commits of epoch E that are
// missing, and lands into bronze every batch in landing/ not in the state,
// in name order: it reads each segment not processed whole (with each
// batch's recorded receive time and source). So a reading is in bronze exactly
// once whatever point the process was killed at, also when a redelivered
// batch is in two segments, and silver equals that of an uninterrupted run.
// A segment that cannot be read whole has its good records landed and the
// rest quarantined under _quarantine/landing/ with the reason.
// The epoch's commit is an ordered list of idempotent steps with a cursor
// (committer.go); a failed lake operation is retried from the step that
// failed, and recovery resumes an interrupted epoch after its bronze commit;
// a commit that landed although the lake reported an error is recognised by
// its commitInfo.txnId.
//
// # Goroutines
//
// Pipeline is a thin front over one type per goroutine: the runner (dedup,
// skew check, fold, live feed, epoch cuts; Run's goroutine, after recovery
// and the start-up scan), the bronze encoder, the committer (the tables,
// gold, quarantine, each epoch's commits and their retries) and the scanner
// (other collectors' recent segments, read off the runner's goroutine). They
// share channels and the counters only; README.md walks one batch through
// them.
//
// One Pipeline writes a lake's tables at a time: a second one fails with
// delta.ErrConflict at its first commit rather than duplicating rows.
package stages
