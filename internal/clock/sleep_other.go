//go:build !linux

package clock

import "time"

// preciseSleep sleeps d (no better primitive than the runtime's here).
func preciseSleep(d time.Duration) { time.Sleep(d) }
