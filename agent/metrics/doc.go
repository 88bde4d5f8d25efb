// Package metrics serves a fixed set of Prometheus metrics in the text
// exposition format (version 0.0.4), reading every value at scrape time.
//
// It replaces the Prometheus client library in the agent, which added 3 MB
// (of 10.4) to the ARMv6 binary for a feature that needs a hundred lines:
// counters, gauges and one histogram, all with constant labels, computed
// from counters the agent keeps anyway. Tests check the output with
// Prometheus' own text parser.
package metrics
