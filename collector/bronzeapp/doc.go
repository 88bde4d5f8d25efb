// Package bronzeapp lets any collector, ingest-only ones included, append
// the batches it landed to bronze itself: concurrent Delta blind appends
// (put-if-absent commits; a commit that loses the race to another
// collector's is retried at the next version by package delta), exactly once
// per collector through its own Delta txn application id, so that silver and
// gold can be computed elsewhere (Databricks, scripts/databricks) from one
// bronze that many collectors fill. The single stage collector
// (collector/stages) stays the default; this is the `--bronze-append` mode.
//
// State, per collector name N, under _checkpoints/bronze/N/:
//
//	instances/{instance}     one object per Lander instance this collector ran
//	                         (written before that instance lands anything), so
//	                         a restart finds its own segments, and the stage
//	                         collector's scans skip them (AppendedInstances)
//	done/{instance}          instances whose segments are all in bronze (gone
//	                         before a start that recovered them)
//	{epoch:020d}.json        the batches in bronze after epoch (per stream, the
//	                         landed sequence numbers), written before the
//	                         epoch's bronze commit, which carries
//	                         txn{appId: "pilake-bronze-N", version: epoch}
//
// Recovery takes the epoch of bronze's txn for the app id, loads that state,
// and appends every batch of its own instances' segments that it lacks.
//
// The stage collector's skew checks apply (Options.MaxSkew, MaxAhead):
// refused readings are quarantined (kind "skew") with the reason before
// the epoch's commit. Stats are what an operator watches (readings and
// batches committed, quarantined, commit retries, lost races, commit
// latency); the collector exports them to Prometheus in this mode.
package bronzeapp
