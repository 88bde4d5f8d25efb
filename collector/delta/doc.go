// Package delta writes and reads Delta Lake tables in a lake: Parquet data
// files plus a transaction log of JSON commits (`_delta_log/%020d.json`)
// written put-if-absent, with Parquet checkpoints (by the table's
// delta.checkpointInterval, and optionally by size and age) and
// `_last_checkpoint`, following the Delta transaction log
// protocol (https://github.com/delta-io/delta/blob/master/PROTOCOL.md).
// pilake creates reader v1 / writer v2 tables (or, with V2 checkpoints,
// reader v3 / writer v7 with only the v2Checkpoint feature) with only
// DataPageV1 pages and PLAIN, dictionary and DELTA_BINARY_PACKED encodings,
// so Spark 3.3+, Databricks and DuckDB read them as they are (V2
// checkpoints: Delta Lake 3.x, Databricks Runtime 13.3 LTS+,
// delta-kernel-rs); it reads tables up
// to reader v3 (deletion vectors, column mapping, timestamp_ntz, V2
// checkpoints) and appends to tables whose writer features it honours (the
// support matrix in README.md).
//
// What is implemented of the protocol:
//
//   - actions protocol, metaData (schemaString, partitionColumns, createdTime,
//     configuration), add (path, partitionValues, size, modificationTime,
//     dataChange, stats with numRecords/minValues/maxValues/nullCount),
//     remove (tombstones with deletionTimestamp), txn (application
//     transaction identifiers, used for exactly-once) and commitInfo;
//   - optimistic concurrency: a commit is put-if-absent at the next version;
//     a writer that loses the race reloads the log, checks the winning commits
//     for conflicts (a txn for the same appId, a remove of a file it also
//     removes, both changing metadata), checks that the table's protocol,
//     metadata and constraints still allow its commit, and retries at the
//     next version;
//   - a reader that is right or says no (reader.go: exact conversions or
//     ErrInexact), deletion vectors (dv.go), column mapping, and every
//     checkpoint shape (checkpoint_read.go);
//   - vacuum by tombstone deletionTimestamp and the protocol's metadata
//     cleanup (vacuum.go); Hive-escaped partition directories with
//     URI-encoded paths (paths.go);
//   - classic single-file V1 checkpoints (`%020d.checkpoint.parquet`) with
//     the checkpoint schema of the spec, and `_last_checkpoint`; with
//     delta.checkpointPolicy=v2, V2-spec checkpoints whose sidecar files
//     later checkpoints reuse while nothing in them changed
//     (checkpoint_v2.go), and the cleanup of unreferenced sidecars;
//   - compaction by time (an OPTIMIZE-like rewrite of the small files of
//     closed hours and days: one commit with add and remove actions,
//     dataChange=false);
//   - retention from the table's properties (delta.deletedFileRetentionDuration,
//     delta.logRetentionDuration, delta.checkpointInterval).
//   - a version checksum file (`_delta_log/%020d.crc`) after each commit
//     whose resulting state the Table knows exactly (checksum.go); readers
//     here do not need them and ignore them.
//
// BronzeWriter writes bronze's data files column by column straight from
// decoded readings (bronze.go); the other tables' files go through
// parquet-go's row writer (WriteFile, EncodeParquet).
//
// Data files never contain partition columns (as in the reference
// implementation); readers take them from the add action's partitionValues.
// Timestamps are Parquet INT64 TIMESTAMP(MICROS, isAdjustedToUTC=true) and
// Delta type "timestamp".
package delta
