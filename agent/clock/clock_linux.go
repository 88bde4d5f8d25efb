//go:build linux

package clock

import (
	"time"

	"golang.org/x/sys/unix"
)

// Synced reports whether the kernel's clock discipline says the wall clock
// is synchronised: adjtimex(2) returns a state other than TIME_ERROR and the
// STA_UNSYNC status bit is clear (what ntpd, chrony and systemd-timesyncd
// maintain; `timedatectl` shows the same as "System clock synchronized").
// A read-only adjtimex needs no privilege.
func Synced() bool {
	var tx unix.Timex // Modes 0: read only
	state, err := unix.Adjtimex(&tx)
	if err != nil {
		return false
	}
	return state != unix.TIME_ERROR && tx.Status&unix.STA_UNSYNC == 0
}

// WallMinusMonoUS returns the wall clock minus CLOCK_MONOTONIC, in µs.
// CLOCK_MONOTONIC is read once (a system call); afterwards its value is
// that reading plus the time elapsed since on Go's monotonic clock, which
// is CLOCK_MONOTONIC read through the vDSO: the sampler asks once per
// reading, and this keeps each call at a time.Now.
func WallMinusMonoUS() int64 {
	now := time.Now()
	return now.UnixMicro() - (monoBase.us + int64(now.Sub(monoBase.at)/time.Microsecond))
}

var monoBase = func() (b struct {
	at time.Time
	us int64
}) {
	var ts unix.Timespec
	b.at = time.Now()
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err == nil {
		b.us = ts.Nano() / 1000
	}
	return b
}()
