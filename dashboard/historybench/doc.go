// Command historybench is scripts/bench.sh history: it builds a lake of
// 24 h × 100 devices through the collector's own stages (collector/stages,
// then collector/rollup), with event time compressed — a day of readings
// submitted as fast as the stages take them, never Parquet written around
// them — then times each of the page's views on the dashboard binary
// beside DuckDB (npm @duckdb/node-api, duckdb.mjs) running the same view as
// SQL over the same Parquet files, and reports the dashboard's RSS.
//
//	historybench -lake /dev/shm/pilake-history -dashboard bin/dashboard
//
// The lake is built once (bench.json marks it done) and reused by later runs.
package main
