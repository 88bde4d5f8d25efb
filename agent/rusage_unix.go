//go:build unix

package main

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// maxRSSKiB returns the process's peak resident set size in KiB.
func maxRSSKiB() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" {
		return int64(ru.Maxrss) / 1024 // bytes there
	}
	return int64(ru.Maxrss) // KiB on Linux and the BSDs
}
