#!/usr/bin/env bash
# A lake that runs for months: drives the collector's real Lander and stages
# with an injected clock through PILAKE_SOAK_DAYS (30) simulated days on a
# local lake (under /dev/shm when it exists, removed at the end), and prints
# per simulated day files and bytes per table, _delta_log and checkpoint
# bytes, tombstones, landing objects, heap, CPU per epoch and delta.Load
# time; then soak_growth_ratio (largest day-30/day-8 ratio),
# soak_heap_mib_max and soak_epoch_cpu_ratio (CPU per epoch, day 30/day 1).
#
# Time compression: an epoch (one commit per table) stands for
# PILAKE_SOAK_EPOCH (10m) of simulated time instead of the collector's 2 s,
# so a day is 144 commits per table rather than 43,200; the devices send
# PILAKE_SOAK_RATE (1) readings/s each, in 1-minute batches.
# PILAKE_SOAK_DEVICES (20) devices, 5 % of them replaced by new ids each
# day, all rebooting daily. collector/README.md ("Budget") scales the
# per-commit figures to production rates. It runs with the collector's GC
# settings (GOGC=400, 448 MiB memory limit; GOGC/GOMEMLIMIT override them).
# ~10 minutes on a 2-core VM.
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./collector/soak -days "${PILAKE_SOAK_DAYS:-30}" -devices "${PILAKE_SOAK_DEVICES:-20}" \
	-rate "${PILAKE_SOAK_RATE:-1}" -epoch "${PILAKE_SOAK_EPOCH:-10m}" -churn "${PILAKE_SOAK_CHURN:-0.05}" ${PILAKE_SOAK_ARGS:-}
