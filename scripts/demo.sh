#!/usr/bin/env bash
# Runs the whole pilake pipeline on this machine: builds the three programs,
# starts the collector (with its embedded MQTT broker and a local lake), three
# simulated agents and the dashboard, and prints the dashboard's URL.
# Ctrl-C stops everything in order (agents, dashboard, collector), leaving the
# lake consistent.
#
# Environment:
#   PILAKE_DEMO_SECONDS=N   run N seconds, stop cleanly, exit 0 (default: until Ctrl-C)
#   PILAKE_LAKE=DIR         lake directory (default ./lake)
#   PILAKE_DEMO_DEVICES     device ids (default "pi-kitchen pi-garage pi-attic")
#   PILAKE_DEMO_MQTT_PORT   embedded broker port (default 1883)
#   PILAKE_DEMO_HTTP_PORT   dashboard port (default 8050)
set -euo pipefail
cd "$(dirname "$0")/.."
LAKE=${PILAKE_LAKE:-./lake}
RUN_SECONDS=${PILAKE_DEMO_SECONDS:-0}
DEVICES=${PILAKE_DEMO_DEVICES:-pi-kitchen pi-garage pi-attic}
MQTT_PORT=${PILAKE_DEMO_MQTT_PORT:-1883}
HTTP_PORT=${PILAKE_DEMO_HTTP_PORT:-8050}
BIN=./bin
STATE=$(mktemp -d "${TMPDIR:-/tmp}/pilake-demo.XXXXXX")
log() { echo "demo: $*" >&2; }

# Clear the variables that would configure the programs from this shell.
for v in $(env | grep -o '^PILAKE_[A-Z_]*' || true); do
  case $v in PILAKE_DEMO_*|PILAKE_LAKE) ;; *) unset "$v" ;; esac
done

log "building into $BIN/"
mkdir -p "$BIN" "$LAKE"
if [ ! -e dashboard/web/vendor/uPlot.iife.min.js ]; then
  log "fetching the chart library (npm ci)"
  dashboard/web/build.sh >&2
fi
go build -o "$BIN/pilake-agent" ./agent
go build -o "$BIN/pilake-collector" ./collector
go build -o "$BIN/pilake-dashboard" ./dashboard   # embeds dashboard/web, so after build.sh

wait_port() {
  for _ in $(seq 1 150); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "nothing listens on port $1; logs are in $STATE"; return 1
}

# The programs run in sessions of their own (setsid), so a Ctrl-C in the terminal reaches only
# this script, which then stops them in order: agents (flush, last PUBACKs), dashboard, collector.
AGENT_PIDS=() DASH_PID= COLLECTOR_PID=
stop_all() {
  trap - INT TERM
  log "stopping agents"
  for p in "${AGENT_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${AGENT_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [ -n "$DASH_PID" ] && { kill -TERM "$DASH_PID" 2>/dev/null || true; wait "$DASH_PID" 2>/dev/null || true; }
  if [ -n "$COLLECTOR_PID" ]; then
    log "stopping the collector (final commit)"
    kill -TERM "$COLLECTOR_PID" 2>/dev/null || true
    wait "$COLLECTOR_PID" 2>/dev/null || true
  fi
  log "lake: $LAKE ($(du -sh "$LAKE" 2>/dev/null | cut -f1)); logs: $STATE"
}
trap 'stop_all; exit 0' INT TERM

setsid "$BIN/pilake-collector" --lake "$LAKE" --listen "127.0.0.1:$MQTT_PORT" --metrics-addr 127.0.0.1:9102 \
  >"$STATE/collector.log" 2>&1 &
COLLECTOR_PID=$!
wait_port "$MQTT_PORT"
log "collector: broker on 127.0.0.1:$MQTT_PORT, lake in $LAKE, metrics on http://127.0.0.1:9102/metrics"

i=0
for d in $DEVICES; do
  setsid "$BIN/pilake-agent" --simulate --device-id "$d" --broker "tcp://127.0.0.1:$MQTT_PORT" \
    --spool-dir "$STATE/spool-$d" --metrics-addr "127.0.0.1:$((9110 + i))" >"$STATE/agent-$d.log" 2>&1 &
  AGENT_PIDS+=($!)
  log "agent $d (metrics http://127.0.0.1:$((9110 + i))/metrics)"
  i=$((i + 1))
done

setsid "$BIN/pilake-dashboard" --lake "$LAKE" --broker "tcp://127.0.0.1:$MQTT_PORT" --listen "127.0.0.1:$HTTP_PORT" \
  >"$STATE/dashboard.log" 2>&1 &
DASH_PID=$!
wait_port "$HTTP_PORT"
echo
echo "  pilake is running: open http://127.0.0.1:$HTTP_PORT/"
echo
if [ "$RUN_SECONDS" -gt 0 ]; then
  sleep "$RUN_SECONDS" &
  wait $! || true
  stop_all
  exit 0
fi
log "Ctrl-C stops everything"
wait "$COLLECTOR_PID" || true
stop_all
