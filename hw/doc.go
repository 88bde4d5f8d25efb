// Package hw gives pilake its BME280: the real sensor on an I2C bus through
// periph.io, and a fake I2C bus that emulates the sensor's registers from a
// seeded signal model, with fault injection, so that tests and --simulate run
// periph's real bmxx80 driver unchanged.
//
// # Use
//
// The agent opens a real sensor with Open, or puts a Sensor on a fake bus
// with NewSensor; both run the same code (chip id check, bmxx80.NewI2C):
//
//	s, err := hw.Open(hw.OpenConfig{Bus: "I2C1", Addr: 0x76, Opts: opts})
//
//	f := hw.NewFake(hw.FakeConfig{Seed: hw.SeedFor(deviceID)})
//	s, err := hw.NewSensor(f, f.Addr(), &opts, false)
//
// For 400 Hz polling use normal mode: opts.Filter != bmxx80.NoFilter and
// opts.Standby != 0 (then bmxx80's Sense is one 8-byte burst read). In forced
// mode, bmxx80 sleeps for a whole conversion on every Sense. ConversionRate
// (ConversionRateFor a BMP280, whose standby table differs) gives the
// sensor's real rate of fresh conversions for the options (about 118/s
// typical at ×1 with 0.5 ms standby); polls beyond that see repeated values.
//
// Until the first conversion after NewSensor or Reinit completes (one
// measurement time, 8 ms at ×1), the data registers hold their reset values,
// which compensate to plausible nonsense (about 26 °C, 82 kPa, 70 %RH); a
// bare driver returns them without an error, Sensor returns ErrNotReady:
// skip that reading. After a sensor reset Sensor returns ErrSensorReset; call
// Reinit. Both are recognised from the registers themselves (reset values,
// then the control registers compared with the configuration), so a
// steady-state read costs no extra transaction; Sense also checks the control
// registers once every 256 calls.
//
// Sensor.Sense returns physic.Env through bmxx80. Sensor.ReadFixed does the
// same burst read and the datasheet's integer compensation itself, giving the
// fixed-point integers of wire.Reading (0.01 °C, Pa/256, %RH/1024) and the
// raw registers, without bmxx80's two allocations per call; tests check that
// its integers equal the driver's on every poll.
//
// The humidity trimming values dig_H4 and dig_H5 are signed 12-bit numbers
// (datasheet table 16; Bosch's driver and Linux sign-extend bit 11). periph's
// bmxx80 v3.7.4 reads them unsigned, so its humidity is wrong, by tens of
// %RH, on a part where either is negative. pilake decodes them signed;
// ReadFixed is right for every part, and Sense, on such a part, does not use
// bmxx80's humidity: it reads the data registers once more and compensates
// them itself.
//
// Reinit (and NewSensor) first wait while status bit 0 (im_update) says the
// sensor is still copying its trimming data from NVM after a power-on or
// reset, as Bosch's driver does after a soft reset: up to 5 × 2 ms, then
// ErrNVMCopy.
//
// # BMP280
//
// A BMP280 answers at the same addresses with chip id 0x58 and has no
// humidity sensor. Open and NewSensor refuse it with ErrBMP280 and a message
// that says so, unless AllowBMP280 is set: then Sensor.HasHumidity is false,
// humidity reads 0, and the agent marks its batches wire.FlagNoHumidity.
// Other chip ids (a BMP180 0x55, a BME680 0x61, a floating bus 0x00/0xFF)
// give ErrNotBME280. Nothing at the address gives the bus's error (a NACK).
//
// # The fake bus
//
// Fake implements periph's i2c.Bus (String, Tx, SetSpeed, and Close). It
// answers at one address (0x76 by default); any other address gets ErrNACK.
// A read is Tx(addr, [reg], r) and auto-increments; a write is Tx(addr,
// [reg, value, reg, value, …], nil). Register map (datasheet section 5.3):
//
//	0x88–0xA1  calibration T1–T3, P1–P9, H1 (DefaultCalibration: the datasheet example)
//	0xD0       chip id 0x60 (0x58 after SetChipID(ChipIDBMP280))
//	0xE0       reset: writing 0xB6 resets the device
//	0xE1–0xE7  calibration H2–H6
//	0xF2       ctrl_hum: takes effect at the next ctrl_meas write (section 5.4.3)
//	0xF3       status: bit 3 set while a conversion runs; bit 0 (im_update) for 2 ms after a reset and the first 50 µs of each measurement
//	0xF4       ctrl_meas: osrs_t, osrs_p, mode (sleep, forced, normal)
//	0xF5       config: t_sb, filter; writing it resets the IIR filter; in normal mode ignored by default (see below)
//	0xF7–0xFE  data: pressure and temperature 20 bit, humidity 16 bit; reset values 0x80000, 0x80000, 0x8000
//
// Timing follows appendix B (section 9): a measurement takes
// 1 + 2·T + (2·P + 0.5) + (2·H + 0.5) ms typical (T, P, H the oversampling
// counts, a term dropped when skipped; FakeConfig.MaxTiming uses the maximum
// 1.25 + 2.3·… + 0.575 instead). In normal mode a new conversion completes
// every t_measure + t_standby and the data registers change only then, so at
// 400 Hz most polls read the previous conversion; in forced mode a ctrl_meas
// write starts one conversion, status bit 3 is set until it completes, and
// the mode returns to sleep. The standby times of t_sb codes 0..5 are 0.5,
// 62.5, 125, 250, 500 and 1000 ms; codes 6 and 7 are 10 and 20 ms on a
// BME280 but 2000 and 4000 ms on a BMP280 (chip id 0x58; BMP280 data sheet
// table 11). The datasheet says config writes in normal mode "may be
// ignored" (section 5.4.6): the fake ignores them by default (counted in
// Stats.IgnoredConfigWrites), so a driver that works against it works on
// every part; FakeConfig.AcceptConfigInNormalMode makes them take effect,
// for drivers that write config after selecting normal mode (Linux's
// bmp280 driver does). Status bit 0 (im_update) is set while the NVM is
// copied: for the 2 ms start-up time (datasheet table 1) after Reset or a
// soft reset, and before every conversion, which the fake shows for the
// first 50 µs of each measurement (pilake's assumption: the datasheet gives
// no duration). NewFake returns a device powered up earlier, past its copy.
// Stats.NVMCopyReads counts calibration reads made during a post-reset
// copy. The IIR filter (section 3.4.4) applies to
// temperature and pressure: filtered = (old·(c−1) + new)/c, initialised with
// the first value after a reset or a config write. Without the filter the
// ADC resolution is 16 + (osrs − 1) bits (sections 3.4.2, 3.4.3), with it 20
// bits. Time comes from FakeConfig.Now (default time.Now); tests inject a
// manual clock and are deterministic. Conversions are computed lazily when a
// transaction or Truth looks at the registers; after a long gap only the
// last 512 are simulated one by one (older ones cannot affect the filter).
//
// # Signal model
//
// Model is the air around one device, deterministic from a 64-bit seed
// (SeedFor hashes a device id, so every device has its own signal and the
// same id always the same one). Its noise-free environment (Model.Env) is:
//
//   - a per-device level: 21 °C ± 1.5, 101325 Pa ± 300, 45 %RH ± 5;
//   - a slow sine: ±0.8 °C over 6 h, ±60 Pa over 12 h, ±2.5 %RH over 4 h,
//     with a per-device phase;
//   - a bounded random walk: two octaves of smooth value noise (random
//     levels at knots joined by a smoothstep), ±0.3 °C over 5 min and
//     ±0.05 °C over 20 s, ±15 Pa over 10 min and ±1.5 Pa over 30 s,
//     ±0.8 %RH over 4 min and ±0.1 %RH over 15 s.
//
// Each conversion adds the sensor's own noise, a Gaussian drawn by hashing
// the seed with the conversion's completion time, with RMS:
//
//   - pressure: 3.3 Pa at ×1 falling to 1.3 Pa at ×16 (a power law,
//     n^−0.336, between them). 1.3 Pa is the BME280 data sheet's
//     full-bandwidth RMS noise at the highest oversampling (section 1,
//     pressure sensor specification). Validation: with the BMP280
//     data sheet's recommended settings (table 7, RMS noise in cm, 1 Pa ≈
//     8.4 cm) the model gives 3.3 Pa for "weather monitoring" (×1, no
//     filter; data sheet 26.4 cm = 3.1 Pa), 2.6 Pa for "drop detection" (×2;
//     20.8 cm = 2.5 Pa) and 0.49 Pa for "handheld low-power" (×16, filter 4;
//     4.0 cm = 0.47 Pa). A test checks all six of table 7's cases through
//     bmxx80 and ReadFixed, measured as the data sheet measures noise (the
//     average standard deviation of 32 consecutive readings): −19 % … +9 %
//     of the table. The full RMS is higher with the IIR filter on (+37 %
//     for "handheld dynamic", ×4 with filter 16): white noise through the
//     filter keeps 1/√(2c−1) of its RMS, the chip's falls faster.
//   - temperature: 0.005 °C at ×1, divided by √n with oversampling n. The
//     data sheet's temperature table gives the 0.01 °C output resolution,
//     not a noise figure; 0.005 °C is pilake's assumption, chosen below the
//     resolution, so most of it disappears in the 0.01 °C output, as on real
//     parts at rest.
//   - humidity: the BME280 data sheet's RMS noise per oversampling (section
//     3.6, noise in humidity): 0.07, 0.05, 0.04, 0.03, 0.02 %RH at ×1, ×2,
//     ×4, ×8, ×16 (the 0.02 %RH of section 1 is the highest-oversampling
//     figure). The humidity output itself moves in steps of about
//     0.011 %RH with typical calibration; tests measure the noise of
//     driver readings against this table.
//
// The IIR filter then acts on the noisy values, reducing white noise by
// √(2c−1) for coefficient c. The chip filters ADC values; the fake filters
// the physical values before converting them to raw, which is the same to
// well within one output step because the compensation is nearly linear over
// the small changes between conversions. The model's noise is before ADC quantisation; a
// raw step adds up to half a step (2.6 Pa at ×1 without the filter).
//
// # From values to registers
//
// For each conversion the fake inverts the datasheet's integer compensation
// (section 4.2.3, the 32-bit temperature and humidity and 64-bit pressure
// versions, which is what bmxx80 runs): a binary search finds the 20-bit raw
// temperature whose t_fine is closest to the model's temperature, then the
// raw pressure and 16-bit raw humidity that compensate closest to the
// model's values at that t_fine (both compensations are monotonic), then a
// check of the neighbouring ADC steps picks the closest. So a driver reading
// the registers returns the model's values to within one output step:
// Fake.Truth gives the values the registers encode, Fake.Resolution the step
// sizes (0.01 °C; about 0.17 Pa at 20 bit; about 0.011 %RH). Where the
// humidity output is clamped (0 or 100 %RH), many raw values give the same
// output and Resolution reports the jump to the nearest different one.
// FakeConfig.Env replaces the model's environment, to drive such edge
// conditions (0 or 100 %RH, −40 °C, 300 hPa).
//
// # Faults
//
// All fault methods are safe to call while other goroutines use the bus; a
// fault applies from the next transaction. Each is shown through the real
// bmxx80 driver in faults_test.go.
//
//   - FailNext(n, err): the next n transactions fail with err (nil: ErrNACK,
//     what Linux reports as EREMOTEIO). bmxx80 flattens errors with %v, so
//     through the driver the message survives, errors.Is does not.
//   - Stall() / Release(): every transaction blocks, as on a bus held low,
//     until Release, Close, or FakeConfig.StallTimeout (real time; then
//     ErrStallTimeout, like a kernel I2C timeout). Stall returns a channel
//     closed when the first transaction blocks, so tests wait on it.
//   - SetChipID(id): the chip id register reads id from the next driver
//     initialisation on; ChipIDBMP280 also hides the humidity registers.
//   - Reset(): power glitch or soft reset. Control registers go to 0 (sleep
//     mode, no conversions), the filter clears, data registers hold their
//     reset values. A bare driver keeps reading those values without an
//     error; Sensor.Sense and Sensor.ReadFixed return ErrSensorReset, and
//     Sensor.Reinit reads the chip id and calibration again and reconfigures.
//   - Freeze(on): the data registers stop (or resume) updating while the
//     device keeps acknowledging: the symptom of a hung measurement. Only
//     unchanged values over a long time reveal it.
//
// Fake.Stats counts transactions, failures, conversions and resets.
//
// # Datasheets
//
//   - Bosch Sensortec, BME280 data sheet, BST-BME280-DS002 (revision 1.6 or
//     later): https://www.bosch-sensortec.com/media/boschsensortec/downloads/datasheets/bst-bme280-ds002.pdf
//   - Bosch Sensortec, BMP280 data sheet, BST-BMP280-DS001 (the compensation
//     example and the recommended-settings noise table):
//     https://www.bosch-sensortec.com/media/boschsensortec/downloads/datasheets/bst-bmp280-ds001.pdf
package hw
