#!/usr/bin/env bash
# Installs pilake-agent as a systemd service on a Raspberry Pi.
#
# On the Pi (with the repository checked out and Go installed):
#   sudo scripts/install-pi.sh
# Or cross-build elsewhere and copy the binary over, then on the Pi:
#   GOOS=linux GOARCH=arm GOARM=6 CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o pilake-agent ./agent
#   sudo scripts/install-pi.sh --binary ./pilake-agent
#
# It creates the system user "pilake" in the i2c group, installs the binary in
# /usr/local/bin, the example configuration as /etc/pilake/agent.conf (kept if
# it exists: edit device-id, broker or iothub-connection-string there), and
# the unit scripts/pilake-agent.service, then enables and (re)starts it.
# I2C must be enabled (raspi-config → Interface Options → I2C).
# PILAKE_INSTALL_ROOT=DIR installs into DIR instead of / and skips systemctl
# (for tests and image building).
set -euo pipefail
cd "$(dirname "$0")/.."
root=${PILAKE_INSTALL_ROOT:-}
binary=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "install-pi.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [[ -z $root && $(id -u) -ne 0 ]]; then
  echo "install-pi.sh: run as root (sudo)" >&2; exit 1
fi

if [[ -z $binary ]]; then
  command -v go >/dev/null || { echo "install-pi.sh: Go not found; build elsewhere and pass --binary" >&2; exit 1; }
  arch=$(uname -m)
  goarch=arm goarm=6
  case $arch in
    aarch64|arm64) goarch=arm64 goarm= ;;
    armv7l) goarm=7 ;;
    armv6l) goarm=6 ;;
    x86_64) goarch=amd64 goarm= ;;
  esac
  binary=$(mktemp)
  trap 'rm -f "$binary"' EXIT
  echo "building pilake-agent for linux/$goarch${goarm:+ GOARM=$goarm}"
  CGO_ENABLED=0 GOOS=linux GOARCH=$goarch GOARM=$goarm go build -trimpath -ldflags='-s -w' -o "$binary" ./agent
fi

if [[ -z $root ]]; then
  getent group i2c >/dev/null || groupadd --system i2c
  if ! id pilake >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /var/lib/pilake-agent --shell /usr/sbin/nologin --groups i2c pilake
  else
    usermod -a -G i2c pilake
  fi
fi
install -D -m 0755 "$binary" "$root/usr/local/bin/pilake-agent"
install -d -m 0755 "$root/etc/pilake"
if [[ ! -e $root/etc/pilake/agent.conf ]]; then
  install -m 0640 agent/agent.conf.example "$root/etc/pilake/agent.conf"
  sed -i "s/^device-id = .*/device-id = $(hostname -s | tr -c 'A-Za-z0-9._\n-' '-')/" "$root/etc/pilake/agent.conf"
  [[ -z $root ]] && chgrp pilake /etc/pilake/agent.conf
  echo "wrote /etc/pilake/agent.conf: set broker (or iothub-connection-string) there"
fi
install -D -m 0644 scripts/pilake-agent.service "$root/etc/systemd/system/pilake-agent.service"
if [[ -z $root ]]; then
  systemctl daemon-reload
  systemctl enable pilake-agent.service
  systemctl restart pilake-agent.service
  systemctl --no-pager status pilake-agent.service || true
  echo "logs: journalctl -u pilake-agent -f    metrics: curl http://127.0.0.1:9101/metrics"
fi
