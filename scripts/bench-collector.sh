#!/usr/bin/env bash
# Collector benchmark (issue 4, "How it is checked"): a load generator
# process publishes pre-encoded batches for N simulated devices (one MQTT
# connection each) through the collector's embedded broker; the run ends when
# bronze holds every reading (ingest → landing → bronze → silver → gold,
# committed). Then the same batches go through a plain broker (Mosquitto) to
# a plain QoS 1 subscriber that merely appends them to a file (the raw move). Prints, one per line:
#   readings_per_s=X  rss_mib=X  raw_move_readings_per_s=Y  ratio=X/Y
# plus informational lines. Knobs (environment):
#   PILAKE_BENCH_DEVICES (5000)  PILAKE_BENCH_SECONDS (10, event-time seconds per device)
#   PILAKE_BENCH_RATE (400 Hz)   PILAKE_BENCH_ENCODING (binary)
#   PILAKE_BENCH_DIR (a fresh temporary directory; the lake goes there)
#   PILAKE_BENCH_PROFILE=1 writes a CPU profile of the collector (pprof) to $DIR/collector.cpu.pprof
set -euo pipefail
cd "$(dirname "$0")/.."

devices=${PILAKE_BENCH_DEVICES:-5000}
seconds=${PILAKE_BENCH_SECONDS:-10}
rate=${PILAKE_BENCH_RATE:-400}
encoding=${PILAKE_BENCH_ENCODING:-binary}
dir=${PILAKE_BENCH_DIR:-$(mktemp -d -t pilake-bench-XXXXXX)}
mkdir -p "$dir"

# A port nothing listens on (probed with bash's /dev/tcp).
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000)) # below the ephemeral range (32768+): 10,000 client sockets use those
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

go build -o "$dir/collector" ./collector
go build -o "$dir/loadgen" ./collector/loadgen

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

mqtt=$(free_port)
metrics=$(free_port)
profile_args=()
if [[ ${PILAKE_BENCH_PROFILE:-} == 1 ]]; then
	profile_args=(--cpu-profile "$dir/collector.cpu.pprof")
fi
"$dir/collector" --lake "$dir/lake" --listen "127.0.0.1:$mqtt" --metrics-addr "127.0.0.1:$metrics" \
	--max-connections-per-source "$((devices + 100))" --max-connections "$((devices + 100))" \
	--log-format json --log-level warn "${profile_args[@]}" 2>"$dir/collector.log" &
cpid=$!
pids+=("$cpid")
for _ in $(seq 1 200); do
	curl -fsS "http://127.0.0.1:$metrics/readyz" >/dev/null 2>&1 && break
	sleep 0.05
done

common=(--devices "$devices" --seconds "$seconds" --rate "$rate" --encoding "$encoding")
out=$("$dir/loadgen" --broker "tcp://127.0.0.1:$mqtt" "${common[@]}" \
	--metrics "http://127.0.0.1:$metrics/metrics" --pid "$cpid" 2>"$dir/loadgen.log")
curl -fsS "http://127.0.0.1:$metrics/metrics" >"$dir/metrics.txt" || true
kill -TERM "$cpid"
wait "$cpid" || { echo "collector exited with an error; see $dir/collector.log" >&2; exit 1; }
pids=()

# Raw move: the same batches, published the same way to a plain broker (a
# private Mosquitto), received by a plain QoS 1 subscriber that appends each
# to a file (fsynced at the end).
raw=$(free_port)
cat >"$dir/mosquitto.conf" <<CONF
listener $raw 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
max_inflight_messages 1000
max_connections -1
log_dest stderr
log_type error
CONF
${PILAKE_MOSQUITTO_BIN:-/usr/sbin/mosquitto} -c "$dir/mosquitto.conf" 2>"$dir/mosquitto.log" &
rpid=$!
pids+=("$rpid")
for _ in $(seq 1 200); do
	(exec 3<>"/dev/tcp/127.0.0.1/$raw") 2>/dev/null && break
	sleep 0.05
done
rawout=$("$dir/loadgen" --broker "tcp://127.0.0.1:$raw" "${common[@]}" --raw-subscribe --raw-dir "$dir" \
	--prefix raw_move_ 2>>"$dir/loadgen.log")

get() { sed -n "s/^$1=//p" <<<"$2"; }
x=$(get readings_per_s "$out")
y=$(get raw_move_readings_per_s "$rawout")
echo "readings_per_s=$x"
echo "rss_mib=$(get rss_mib "$out")"
echo "raw_move_readings_per_s=$y"
echo "ratio=$(awk -v x="$x" -v y="$y" 'BEGIN { printf "%.3f", x / y }')"
echo "# devices=$devices rate_hz=$rate seconds=$seconds encoding=$encoding"
echo "# collector: $(grep -v '^readings_per_s=\|^rss_mib=' <<<"$out" | tr '\n' ' ')"
echo "# raw move: $(grep -v '^raw_move_readings_per_s=' <<<"$rawout" | tr '\n' ' ')"
echo "# lake: $(du -sh "$dir/lake" | cut -f1) in $dir/lake"
