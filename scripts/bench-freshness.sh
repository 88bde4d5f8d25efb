#!/usr/bin/env bash
# Table freshness (issue 11): the collector (embedded broker, local lake) with
# 100 simulated devices at 400 Hz (1 s batches, the agent's defaults), and an
# independent reader polling the Delta logs of bronze, silver and gold every
# 250 ms: now minus the newest event time each table shows (bronze: newest
# reading; silver and gold: newest window end), read from the add actions'
# statistics as another engine would. Prints, one per line:
#   bronze_lag_p50_ms, bronze_lag_p95_ms   (target p95 < 3 s)
#   silver_lag_p50_ms, silver_lag_p95_ms   (target p95 < allowed lateness 10 s + 3 s)
#   gold_lag_p50_ms,   gold_lag_p95_ms     (target p95 < 15 s)
# Knobs: PILAKE_BENCH_DEVICES (100) PILAKE_BENCH_RATE (400) PILAKE_BENCH_SECONDS (60, after 20 s warm-up)
#        PILAKE_BENCH_DIR (a fresh temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."

devices=${PILAKE_BENCH_DEVICES:-100}
rate=${PILAKE_BENCH_RATE:-400}
seconds=${PILAKE_BENCH_SECONDS:-60}
dir=${PILAKE_BENCH_DIR:-$(mktemp -d -t pilake-freshness-XXXXXX)}
mkdir -p "$dir"
unset PILAKE_BENCH_DEVICES PILAKE_BENCH_RATE PILAKE_BENCH_SECONDS PILAKE_BENCH_DIR

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
go build -o "$dir/collector" ./collector
go build -o "$dir/latencybench" ./dashboard/latencybench

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT
wait_http() { for _ in $(seq 1 200); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }

mqtt=$(free_port)
metrics=$(free_port)
"$dir/collector" --lake "$dir/lake" --listen "127.0.0.1:$mqtt" --metrics-addr "127.0.0.1:$metrics" \
	--log-format json --log-level warn 2>"$dir/collector.log" &
pids+=($!)
wait_http "http://127.0.0.1:$metrics/readyz"

"$dir/latencybench" --broker "tcp://127.0.0.1:$mqtt" --freshness "$dir/lake" --devices "$devices" --rate "$rate" \
	--warmup 20s --seconds "${seconds}s" 2>"$dir/freshness.log" | tee "$dir/result.txt"
echo "# logs and lake in $dir"
