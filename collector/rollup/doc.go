// Package rollup maintains the rollup tiers of silver: Delta tables beside
// it (silver_10s, silver_1m, silver_1h) whose rows are silver rows of a
// wider window — per device and bucket, the readings' count, min, max and
// mean — so that a chart of a long range reads about as many rows as it
// draws.
//
// A tier is built from the table below it (silver_10s from silver,
// silver_1m from silver_10s, silver_1h from silver_1m) the way another
// engine would: by reading that table's Delta log and data files. Each tier
// keeps a frontier: every bucket that ends at or before it has been written.
// The frontier follows the source's newest window minus a grace period
// (default 30 s), so a bucket is written once, whole, after the devices'
// allowed lateness has passed. Source rows committed later for a bucket
// already written (a device replaying its spool after an outage) become a
// correction row of the same bucket: a bucket's rows combine (counts add,
// min of minima, max of maxima, count-weighted mean) to exactly the
// aggregate of its source rows.
//
// The frontier and the source version read are recorded in each commit as
// Delta txn actions (app ids AppID and AppID+"-source"), in the same commit
// as the rows, so a restart resumes where the last commit ended and never
// writes a row twice.
package rollup
