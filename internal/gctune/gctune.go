// Package gctune holds the collector's garbage collector settings, so that
// what measures the collector (the soak benchmark) runs with the same ones.
package gctune

import (
	"os"
	"runtime/debug"
)

const (
	// Percent is the collector's GOGC: its heap is mostly short-lived
	// batches and rows, so collecting less often saves a large share of
	// the CPU (a third of it in the soak benchmark).
	Percent = 400
	// MemoryLimit is the collector's soft memory limit (GOMEMLIMIT): it
	// keeps RSS bounded (< 512 MiB) whatever Percent lets the heap grow to.
	MemoryLimit = 448 << 20
)

// Apply sets Percent and MemoryLimit unless the GOGC and GOMEMLIMIT
// environment variables say otherwise.
func Apply() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(Percent)
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(MemoryLimit)
	}
}
