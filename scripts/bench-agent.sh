#!/usr/bin/env bash
# Agent benchmarks (issue 3). Prints exactly five lines:
#   bytes_per_reading=X   wire v1 bytes per reading on the simulator at 400 Hz (BenchmarkPipeline/fixed)
#   ns_per_reading=X      fake-bus read → compensation → batch → encode, per reading (BenchmarkPipeline/fixed)
#   allocs_per_reading=X  allocations per reading, amortised (same benchmark)
#   rss_mib=X             peak RSS of the agent binary over a run at 400 Hz on the simulator
#   lateness_p99_us=X     p99 tick lateness over that run
# PILAKE_BENCH_SECONDS=N shortens the run (default 60). The run needs an MQTT
# broker: PILAKE_TEST_MOSQUITTO if set, else a private /usr/sbin/mosquitto on
# a free port. Diagnostics go to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${PILAKE_BENCH_SECONDS:-60}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

out=$(go test -run '^$' -bench 'BenchmarkPipeline/fixed' -benchtime 400000x -count 1 ./agent/sample)
echo "$out" >&2
line=$(echo "$out" | grep '^BenchmarkPipeline/fixed')
metric() { echo "$line" | awk -v u="$1" '{for (i = 2; i <= NF; i++) if ($i == u) print $(i-1)}'; }

CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$work/pilake-agent" ./agent
broker=${PILAKE_TEST_MOSQUITTO:-}
if [[ -z $broker ]]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 200000\nlog_dest stderr\n' "$port" >"$work/mosquitto.conf"
  /usr/sbin/mosquitto -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
  pids+=($!)
  broker=tcp://127.0.0.1:$port
  for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
fi
echo "agent: ${secs}s at 400 Hz on the simulator → $broker" >&2
"$work/pilake-agent" --simulate --device-id bench-agent --broker "$broker" --spool-dir "$work/spool" \
  --metrics-addr "" --summary-file "$work/summary.json" --log-format text 2>"$work/agent.log" &
apid=$!
pids+=("$apid")
sleep "$secs"
kill -TERM "$apid"
wait "$apid" || { echo "agent failed:" >&2; cat "$work/agent.log" >&2; exit 1; }
cat "$work/summary.json" >&2
sum() { python3 -c "import json,sys; print(json.load(open('$work/summary.json'))['$1'])"; }

echo "bytes_per_reading=$(metric bytes/reading)"
echo "ns_per_reading=$(metric ns/reading)"
echo "allocs_per_reading=$(metric allocs/op)"
echo "rss_mib=$(python3 -c "print(round($(sum max_rss_kib)/1024, 1))")"
echo "lateness_p99_us=$(sum lateness_p99_us)"
