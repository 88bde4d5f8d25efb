// Package sample polls the BME280 on a drift-free schedule and groups the
// readings into wire batches.
//
// # Schedule
//
// Tick i is due at start + i·interval (2.5 ms at the default 400 Hz), measured
// on the monotonic clock, so errors never accumulate. A tick that comes more
// than one interval late is not made up by a burst of reads: the ticks it
// overran are skipped and counted (Stats.MissedTicks). Every tick's lateness
// (how long after its due time the read started) goes into a histogram whose
// p50/p99 are exported.
//
// A reading's TimeUS is the wall-clock time of its tick's due time (the wall
// clock read at the tick minus the tick's lateness), so timestamps of
// consecutive readings differ by exactly the interval and the wire format's
// delta-of-delta column stays zero; the lateness histogram says how far the
// real read was from that time (tens of µs, against a conversion period of
// ~9 ms).
//
// # Freshness
//
// A BME280 converts at most ~110–125 times a second with T, P and H at ×1;
// polled at 400 Hz most reads return the previous conversion again. A reading
// is Fresh when any of its three fixed-point values differs from the previous
// poll's. A conversion that happened to produce the very same three values is
// counted as repeated — with pressure in Pa/256 and the sensor's noise that is
// rare. When no value has changed for FrozenAfter (default 2 s, over 200
// conversion periods), the sensor is declared frozen in Health and
// re-initialised (at most once per FrozenAfter).
//
// # Faults
//
// Reads run on the sampling goroutine (a hop to a reader goroutine per read
// doubled the agent's CPU use). A watchdog marks the sensor stuck in Health
// when a read has not returned within ReadTimeout (default 100 ms), as on a
// bus whose slave holds SDA low; reads cannot overlap on one bus, so the
// sampler waits for it, counting the ticks it overran as missed, and discards
// a read that came back late. Bus errors are retried with exponential backoff (10 ms doubling to 1 s); after 5
// consecutive errors, or when the sensor reports a reset (hw.ErrSensorReset),
// the sensor is re-initialised (chip id and calibration read again). A failing
// re-initialisation (e.g. a BMP280 where a BME280 is required) is reported in
// Health with its message and retried with backoff. Nothing here panics or
// exits: the sampler runs until its context ends.
//
// # Fixed point
//
// periph's bmxx80 driver returns physic.Env in SI units computed from the
// datasheet's integer compensation; FromEnv turns them back into the
// compensation's own integers (0.01 °C, Pa/256, 1/1024 %RH) without loss.
package sample
