#!/usr/bin/env bash
# Benchmarks the collector's table stages (bronze → silver → gold into a local
# Delta lake) without MQTT: decoded 400-reading batches from 1000 and 5000
# devices. Prints readings_per_s_DEVICES, heap_mib_DEVICES and
# cpu_ns_per_reading_DEVICES (user+system CPU of the whole process), one per line.
# BENCH_BATCHES (default 60000) sets how many batches each run submits.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${BENCH_BATCHES:-60000}"
go test -run '^$' -bench 'Pipeline' -benchtime "${n}x" ./collector/stages 2>/dev/null |
	awk '/^BenchmarkPipeline/ {
		split($1, a, "devices="); split(a[2], d, "-");
		for (i = 2; i <= NF; i++) {
			if ($(i+1) == "readings/s") printf "readings_per_s_%s=%.0f\n", d[1], $i;
			if ($(i+1) == "heap_MiB") printf "heap_mib_%s=%.1f\n", d[1], $i;
			if ($(i+1) == "cpu_ns/reading") printf "cpu_ns_per_reading_%s=%.0f\n", d[1], $i;
		}
	}'
