#!/usr/bin/env bash
# Starts (or stops) the real services pilake's integration tests use, on
# loopback, and prints the environment that points the tests at them:
#   eval "$(scripts/services.sh start)"   # Mosquitto, Azurite; Chromium path
#   scripts/services.sh stop
# If they already run (started earlier by this script), start reuses them and
# prints PILAKE_SERVICES_REUSED=1 as well, so a caller knows not to stop them.
# Installs what is missing first (Debian: mosquitto, chromium; npm: azurite).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${PILAKE_SERVICES_DIR:-/tmp/pilake-services}
MQTT_PORT=${PILAKE_MOSQUITTO_PORT:-18830}
AZURITE_PORT=${PILAKE_AZURITE_PORT:-10010}

log() { echo "services: $*" >&2; }

install() {
  local need=()
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  fi
  if [ ! -x scripts/services/node_modules/.bin/azurite-blob ]; then
    log "installing azurite from npm"
    (cd scripts/services && npm ci --no-audit --no-fund --loglevel=error >&2)
  fi
}

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 100); do
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  log "$name did not start on port $port; its log:"; cat "$STATE/$name.log" >&2 || true
  return 1
}

running() {
  local name
  for name in mosquitto azurite; do
    [ -f "$STATE/$name.pid" ] && kill -0 "$(cat "$STATE/$name.pid")" 2>/dev/null || return 1
  done
  (exec 3<>/dev/tcp/127.0.0.1/"$MQTT_PORT") 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/"$AZURITE_PORT") 2>/dev/null
}

print_env() {
  echo "export PILAKE_TEST_MOSQUITTO=tcp://127.0.0.1:$MQTT_PORT"
  echo "export PILAKE_TEST_AZURITE=http://127.0.0.1:$AZURITE_PORT/devstoreaccount1"
  echo "export PILAKE_TEST_CHROMIUM=/usr/bin/chromium"
}

start() {
  install
  mkdir -p "$STATE"
  if running; then
    log "already running: mosquitto on 127.0.0.1:$MQTT_PORT, azurite on 127.0.0.1:$AZURITE_PORT"
    print_env
    echo "export PILAKE_SERVICES_REUSED=1"
    return
  fi
  stop_quiet
  cat >"$STATE/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 200000
max_inflight_messages 1000
log_dest stderr
log_type error
log_type warning
CONF
  MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  nohup "$MOSQ" -c "$STATE/mosquitto.conf" >"$STATE/mosquitto.log" 2>&1 &
  echo $! >"$STATE/mosquitto.pid"
  nohup scripts/services/node_modules/.bin/azurite-blob --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" \
    --inMemoryPersistence --skipApiVersionCheck --loose --disableTelemetry --silent \
    >"$STATE/azurite.log" 2>&1 &
  echo $! >"$STATE/azurite.pid"
  wait_port "$MQTT_PORT" mosquitto
  wait_port "$AZURITE_PORT" azurite
  log "mosquitto on 127.0.0.1:$MQTT_PORT, azurite on 127.0.0.1:$AZURITE_PORT"
  print_env
}

stop_quiet() {
  for name in mosquitto azurite; do
    if [ -f "$STATE/$name.pid" ]; then
      kill "$(cat "$STATE/$name.pid")" 2>/dev/null || true
      rm -f "$STATE/$name.pid"
    fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop_quiet; log "stopped" ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
