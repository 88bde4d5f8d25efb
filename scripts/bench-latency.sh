#!/usr/bin/env bash
# Dashboard latency benchmark (issue 5, "How it is checked"): the collector
# (embedded broker, local lake) with 100 simulated devices at 400 Hz and the
# default 1 s batch interval, the dashboard, and headless Chromium on the
# page. For every live point the page receives it records the time from the
# capture of the newest reading the point includes to the point's arrival in
# the page (one machine, one clock). Prints, one per line:
#   e2e_p50_ms=X  e2e_p99_ms=Y   (target: p99 < 250 ms; issue 11: < 50 ms)
#   then the same with 1,000 live streams (the browser and 999 Go SSE clients):
#   e2e_p50_ms_1000_clients=  e2e_p99_ms_1000_clients=  (target: p99 < 250 ms)
# plus informational lines (collector_p50/p99_ms: capture → collector publish).
# Knobs (environment):
#   PILAKE_BENCH_DEVICES (100)  PILAKE_BENCH_RATE (400 Hz)  PILAKE_BENCH_BATCH (1s)
#   PILAKE_BENCH_SECONDS (30, measuring time after a 5 s warm-up)
#   PILAKE_BENCH_AGENTS=1: run the devices as real `agent --simulate` processes
#     (the fake I2C BME280 through periph's driver) instead of the in-process
#     load generator; heavy on 2 cores beyond ~20 devices.
#   PILAKE_BENCH_ALIGNED (1): every device's batches end at the same moments, as
#     agents' do by default (--batch-align: batches cut on whole seconds of a
#     synchronised clock), so live updates arrive in one burst per second;
#     0: their phases are spread evenly over the batch interval (agents with
#     --batch-align=false started at random times), an update every 10 ms at
#     100 devices, and no schedule of <= 10 messages/s per client can keep an
#     update waiting less than ~100 ms at p99 (see BENCHMARKS.md).
#   PILAKE_BENCH_DIR (a fresh temporary directory)
#   PILAKE_TEST_CHROMIUM (/usr/bin/chromium)
set -euo pipefail
cd "$(dirname "$0")/.."

devices=${PILAKE_BENCH_DEVICES:-100}
rate=${PILAKE_BENCH_RATE:-400}
batch=${PILAKE_BENCH_BATCH:-1s}
seconds=${PILAKE_BENCH_SECONDS:-30}
dir=${PILAKE_BENCH_DIR:-$(mktemp -d -t pilake-latency-XXXXXX)}
mkdir -p "$dir"
# The bench tool reads PILAKE_BENCH_* itself; pass everything as flags instead.
aligned=true
if [[ ${PILAKE_BENCH_ALIGNED:-1} == 0 ]]; then aligned=false; fi
unset PILAKE_BENCH_DEVICES PILAKE_BENCH_RATE PILAKE_BENCH_BATCH PILAKE_BENCH_SECONDS PILAKE_BENCH_DIR PILAKE_BENCH_ALIGNED

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

[[ -f dashboard/web/vendor/uPlot.iife.min.js ]] || dashboard/web/build.sh >&2
go build -o "$dir/collector" ./collector
go build -o "$dir/dashboard" ./dashboard
go build -o "$dir/latencybench" ./dashboard/latencybench
if [[ ${PILAKE_BENCH_AGENTS:-} == 1 ]]; then go build -o "$dir/agent" ./agent; fi

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

wait_http() { for _ in $(seq 1 200); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "no answer from $1" >&2; return 1; }

mqtt=$(free_port)
metrics=$(free_port)
web=$(free_port)
"$dir/collector" --lake "$dir/lake" --listen "127.0.0.1:$mqtt" --metrics-addr "127.0.0.1:$metrics" \
	--log-format json --log-level warn 2>"$dir/collector.log" &
pids+=($!)
wait_http "http://127.0.0.1:$metrics/readyz"
"$dir/dashboard" --lake "$dir/lake" --broker "tcp://127.0.0.1:$mqtt" --listen "127.0.0.1:$web" \
	--max-live-clients 1100 --log-level warn 2>"$dir/dashboard.log" &
pids+=($!)
wait_http "http://127.0.0.1:$web/healthz"

load=$devices
if [[ ${PILAKE_BENCH_AGENTS:-} == 1 ]]; then
	for i in $(seq -f '%03g' 0 $((devices - 1))); do
		"$dir/agent" --simulate --device-id "agent-$i" --broker "tcp://127.0.0.1:$mqtt" --rate "$rate" \
			--batch-interval "$batch" --spool-dir "$dir/spool-$i" --metrics-addr "" 2>"$dir/agent-$i.log" &
		pids+=($!)
	done
	load=0
fi

"$dir/latencybench" --broker "tcp://127.0.0.1:$mqtt" --dashboard "http://127.0.0.1:$web/" \
	--devices "$load" --rate "$rate" --batch "$batch" --seconds "${seconds}s" --aligned="$aligned" 2>"$dir/latencybench.log" | tee "$dir/result.txt"
# The same with 1,000 live streams: the browser measuring, 999 Go clients reading /api/live.
"$dir/latencybench" --broker "tcp://127.0.0.1:$mqtt" --dashboard "http://127.0.0.1:$web/" \
	--devices "$load" --rate "$rate" --batch "$batch" --seconds "${seconds}s" --aligned="$aligned" --sse-clients 999 2>"$dir/latencybench-1000.log" |
	tee "$dir/result-1000.txt" | sed -n -e 's/^e2e_p99_ms=/e2e_p99_ms_1000_clients=/p' -e 's/^e2e_p50_ms=/e2e_p50_ms_1000_clients=/p' -e '/^sse_clients=/p'
echo "# mode=$([[ ${PILAKE_BENCH_AGENTS:-} == 1 ]] && echo agents || echo loadgen) devices=$devices logs in $dir"
