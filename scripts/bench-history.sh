#!/usr/bin/env bash
# The dashboard's history views at fleet size. Builds (once) a lake of 24 h x
# 100 devices through the collector's own stages and rollups, event time
# compressed (4 readings/s/device: 34.6 M readings, a few minutes on 2 cores),
# then times each view (one device / all x 1 min, 15 min, 1 h, 24 h, a 6 h
# custom range) on the dashboard binary, warm, beside DuckDB (npm
# @duckdb/node-api) on the same Parquet files, and the dashboard's RSS.
# Prints one line per view, then history_p95_ms_max=, history_vs_duckdb_max=,
# dashboard_rss_mib= (high-water mark).
#   BENCH_HISTORY_LAKE  lake directory (default /dev/shm/pilake-history; kept for reruns)
#   BENCH_HISTORY_ARGS  more historybench flags (-devices, -hours, -hz, -n)
set -euo pipefail
cd "$(dirname "$0")/.."
lake="${BENCH_HISTORY_LAKE:-/dev/shm/pilake-history}"
mkdir -p bin
go build -o bin/dashboard ./dashboard
go build -o bin/historybench ./dashboard/historybench
if [ ! -d dashboard/historybench/node_modules/@duckdb/node-api ]; then
	npm ci --prefix dashboard/historybench --no-audit --no-fund >/dev/null
fi
# shellcheck disable=SC2086
exec bin/historybench -lake "$lake" -dashboard bin/dashboard ${BENCH_HISTORY_ARGS:-}
