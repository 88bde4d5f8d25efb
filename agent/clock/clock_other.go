//go:build !linux

package clock

import "time"

var processStart = time.Now()

// Synced reports false: without adjtimex the agent cannot tell.
func Synced() bool { return false }

// WallMinusMonoUS approximates the offset with the process start time as the
// monotonic origin (only Linux has CLOCK_MONOTONIC as time since boot here).
func WallMinusMonoUS() int64 {
	now := time.Now()
	return now.UnixMicro() - now.Sub(processStart).Microseconds()
}
