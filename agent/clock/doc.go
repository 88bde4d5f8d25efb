// Package clock tells how far the agent can trust its wall clock: whether the
// kernel considers it NTP-synchronised, and the offset between the wall clock
// and the monotonic clock (time since boot).
//
// A Raspberry Pi has no real-time clock: it boots with the time it saved at
// shutdown (fake-hwclock) or 1970, and NTP steps it later. Each batch carries
// wire.FlagClockSynced from Synced and MonoOffsetUS from WallMinusMonoUS, so
// the collector can tell trustworthy timestamps from the rest and re-base a
// batch captured before the clock was set.
package clock
