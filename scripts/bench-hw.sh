#!/usr/bin/env bash
# Benchmarks hw: one 400 Hz poll of the fake BME280 (burst read + compensation),
# through periph's bmxx80 driver and through hw.Sensor.ReadFixed, and one
# conversion of the signal model. Prints "name=value" lines.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(go test -run '^$' -bench 'BenchmarkSense|BenchmarkConversion' -benchtime "${PILAKE_BENCHTIME:-1s}" -count 1 ./hw/)
echo "$out" >&2
echo "$out" | awk '
  /^BenchmarkSense\/bmxx80/    { print "hw_bmxx80_sense_ns_per_reading=" $3; print "hw_bmxx80_sense_allocs_per_reading=" $(NF-1) }
  /^BenchmarkSense\/ReadFixed/ { print "hw_readfixed_ns_per_reading=" $3;   print "hw_readfixed_allocs_per_reading=" $(NF-1) }
  /^BenchmarkConversion/       { print "hw_model_conversion_ns=" $3 }
'
