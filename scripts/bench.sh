#!/usr/bin/env bash
# Runs pilake's benchmarks and prints their figures, one "name=value" per line.
#   scripts/bench.sh agent       wire size, per-reading cost, agent RSS and sampling lateness
#   scripts/bench.sh collector   sustained readings/s through ingest → bronze → silver → gold
#   scripts/bench.sh latency     pipeline-to-screen latency in a real browser
#   scripts/bench.sh hw          the fake BME280 bus: per-read cost through bmxx80 and ReadFixed
#   scripts/bench.sh tables      the stages alone (bronze → silver → gold into a local lake)
#   scripts/bench.sh history     the dashboard's history views on 24 h x 100 devices, beside DuckDB
#   scripts/bench.sh freshness   bronze/silver/gold lag behind now, read from the Delta logs while devices send
#   scripts/bench.sh soak        30 simulated days: is the lake's upkeep flat (files, log, heap, CPU)?
#   scripts/bench.sh all         all of them
# Figures measured on the reference machine are in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
case $what in
  agent|collector|latency|hw|tables|history|freshness|soak) exec "scripts/bench-$what.sh" ;;
  all) for w in hw agent collector latency; do echo "# $w"; "scripts/bench-$w.sh"; done ;;
  *) echo "usage: $0 agent|collector|latency|hw|tables|history|freshness|soak|all" >&2; exit 2 ;;
esac
