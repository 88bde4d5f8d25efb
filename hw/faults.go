package hw

// Fault injection. Each method is safe to call while other goroutines run
// transactions; a fault takes effect from the next transaction on.

// FailNext makes the next n transactions fail with err, wrapped; a nil err
// means ErrNACK (the device does not acknowledge, as when it is unplugged or
// browned out). n <= 0 cancels pending failures.
func (f *Fake) FailNext(n int, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		err = ErrNACK
	}
	f.failN, f.failErr = max(n, 0), err
}

// Stall makes the bus hang, as when a slave holds SDA low: from now on every
// transaction blocks until Release or Close is called, or until
// FakeConfig.StallTimeout passes (then it fails with ErrStallTimeout). The
// returned channel is closed when the first transaction blocks, so a test can
// wait for it instead of sleeping. Calling Stall while stalled returns a new
// channel for the next blocked transaction.
func (f *Fake) Stall() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stall == nil {
		f.stall = make(chan struct{})
	}
	f.blocked = make(chan struct{})
	return f.blocked
}

// Release ends a stall: blocked transactions proceed normally.
func (f *Fake) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stall != nil {
		close(f.stall)
		f.stall = nil
	}
	f.blocked = nil
}

// SetChipID changes the chip id register 0xD0, as if another part were
// soldered in: ChipIDBMP280 also hides the humidity registers (calibration
// 0xA1 and 0xE1..0xE7, ctrl_hum, data 0xFD..0xFE read 0). Any other value
// makes drivers reject the device. The change applies to the next driver
// initialisation; a driver already running keeps reading the data registers.
func (f *Fake) SetChipID(id byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.chipID = id
}

// Reset resets the sensor as a power glitch or a soft reset (0xB6 written to
// 0xE0) does: every control register returns to 0, so the sensor is in sleep
// mode and converts nothing, the IIR filter is cleared and the data registers
// hold their reset values (0x80000 for pressure and temperature, 0x8000 for
// humidity). A driver that keeps polling reads those reset values without
// any error; software must notice and initialise the sensor again
// (Sensor.Sense reports ErrSensorReset).
func (f *Fake) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resetLocked()
}

// Freeze stops (on=true) or resumes the data registers' updates: the sensor
// keeps converting and acknowledging, but every read returns the last values,
// as a sensor whose measurement has hung would. Truth reports the frozen
// values too; Stats.Conversions keeps counting.
func (f *Fake) Freeze(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = on
}
