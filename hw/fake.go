package hw

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
)

// Chip ids read from register 0xD0.
const (
	ChipIDBME280 = 0x60
	ChipIDBMP280 = 0x58
)

// Register addresses (datasheet section 5.3, memory map).
const (
	regCalib1   = 0x88 // 26 bytes, to 0xA1
	regChipID   = 0xD0
	regReset    = 0xE0
	regCalib2   = 0xE1 // 7 bytes, to 0xE7
	regCtrlHum  = 0xF2
	regStatus   = 0xF3
	regCtrlMeas = 0xF4
	regConfig   = 0xF5
	regData     = 0xF7 // 8 bytes: press[3], temp[3], hum[2]
	resetWord   = 0xB6 // written to 0xE0: soft reset
)

// Sentinel errors of the fake bus.
var (
	// ErrNACK is returned when no device acknowledges: a wrong address, or
	// an injected fault (FailNext). Linux reports this as EREMOTEIO.
	ErrNACK = errors.New("i2c: no acknowledge from device (NACK)")
	// ErrStallTimeout is returned by a transaction that waited on a stalled
	// bus for longer than FakeConfig.StallTimeout.
	ErrStallTimeout = errors.New("i2c: transaction timed out on a stalled bus")
	// ErrClosed is returned by transactions on a closed fake bus.
	ErrClosed = errors.New("i2c: bus closed")
)

// FakeConfig configures a fake BME280. The zero value is usable.
type FakeConfig struct {
	// Seed selects the signal model (see SeedFor for device ids).
	Seed uint64
	// Addr is the device address on the bus: 0x76 (default) or 0x77.
	Addr uint16
	// ChipID is the value of register 0xD0: ChipIDBME280 (default) or
	// ChipIDBMP280, which also hides the humidity registers.
	ChipID byte
	// Calibration is the factory trimming; default DefaultCalibration.
	Calibration *Calibration
	// Now is the clock that drives conversions; default time.Now. Inject a
	// controllable clock to make tests deterministic.
	Now func() time.Time
	// MaxTiming uses the datasheet's maximum measurement time instead of the
	// typical one (appendix B, section 9.1).
	MaxTiming bool
	// StallTimeout bounds how long a transaction waits on a stalled bus
	// (see Stall) before failing with ErrStallTimeout, like a bus driver's
	// timeout. It is measured with the real clock. 0 waits until Release.
	StallTimeout time.Duration
	// AcceptConfigInNormalMode makes config (0xF5) writes in normal mode
	// take effect (t_sb from the next cycle, filter reset and changed at
	// once). By default the fake ignores them, the worst case the datasheet
	// allows ("writes to the config register in normal mode may be ignored",
	// section 5.4.6), so that a driver that works against the fake works on
	// every part; Stats.IgnoredConfigWrites counts them. Set it to run a
	// driver that writes config after selecting normal mode (as Linux's
	// bmp280 driver does) as on parts that accept such writes.
	AcceptConfigInNormalMode bool
	// Env, if set, replaces the signal model's noise-free environment (see
	// Model.Env), for edge conditions: 0 or 100 %RH, −40 or 85 °C, 300 or
	// 1100 hPa. The fake still adds the sensor's noise and filter.
	// Humidity is clamped to 0..100 %RH.
	Env func(t time.Time) Values
}

// Sample is what the fake's data registers currently hold, in physical units:
// the model's values (environment + sensor noise, through the IIR filter for
// temperature and pressure) for the last conversion, before ADC quantisation.
// Reading the sensor through a driver returns these values to within the
// sensor's resolution (see Fake.Resolution).
type Sample struct {
	Values
	// Time is when the conversion completed; zero if none since reset.
	Time time.Time
	// Seq counts data-register updates since the fake was created; a poll
	// that sees the same Seq as the previous one read a repeated value.
	Seq uint64
}

type mode uint8

const (
	modeSleep  mode = 0
	modeForced mode = 1
	modeNormal mode = 3
)

// maxCatchUp bounds the conversions simulated one by one after a long gap
// between transactions; older ones cannot matter through a 16× IIR filter
// ((15/16)^512 ≈ 5e-15).
const maxCatchUp = 512

// Fake is an I2C bus with one emulated BME280 on it. It implements periph's
// i2c.Bus, so periph's bmxx80 driver (or any other) runs against it
// unchanged. All methods are safe for concurrent use.
type Fake struct {
	cfg   FakeConfig
	cal   Calibration
	model *Model
	tph   [26]byte
	hcal  [7]byte

	mu      sync.Mutex
	chipID  byte
	ctrlHum byte // as written
	osrsH   byte // effective (latched by a ctrl_meas write)
	ctrl    byte // ctrl_meas
	config  byte
	data    [8]byte
	mode    mode

	tMeas, period time.Duration // current measurement time and cycle
	start         time.Time     // normal: start of the current cycle series
	next          time.Time     // normal/forced: completion of the next conversion

	nvmUntil  time.Time  // status im_update is set until then (power-on/reset NVM copy)
	filt      [2]float64 // IIR memory for T and P
	filtInit  [2]bool
	truth     Sample
	lastTFine int32
	seq       uint64 // conversions that reached the data registers

	// faults
	failN   int
	failErr error
	frozen  bool
	stall   chan struct{} // non-nil while stalled; closed by Release
	blocked chan struct{} // closed when the first Tx blocks on the stall
	closed  bool
	done    chan struct{} // closed by Close

	stats Stats
}

// Stats counts what happened on the fake bus.
type Stats struct {
	Tx          uint64 // transactions attempted
	Failed      uint64 // transactions that returned an error
	Conversions uint64 // conversions completed (updates of the data registers, including frozen ones)
	Resets      uint64 // soft resets and Reset calls
	// IgnoredConfigWrites counts config (0xF5) writes dropped because the
	// device was in normal mode (see FakeConfig.AcceptConfigInNormalMode).
	IgnoredConfigWrites uint64
	// NVMCopyReads counts reads of the calibration registers while status
	// im_update was set after a reset (the NVM was still being copied): a
	// driver should wait for the bit to clear, as Bosch's does.
	NVMCopyReads uint64
}

var _ i2c.Bus = (*Fake)(nil)

// NewFake returns a fake bus holding a BME280 in its power-on state (sleep
// mode), ready for bmxx80.NewI2C(fake, fake.Addr(), opts).
func NewFake(cfg FakeConfig) *Fake {
	if cfg.Addr == 0 {
		cfg.Addr = 0x76
	}
	if cfg.ChipID == 0 {
		cfg.ChipID = ChipIDBME280
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	f := &Fake{cfg: cfg, cal: DefaultCalibration, model: NewModel(cfg.Seed), done: make(chan struct{})}
	if cfg.Calibration != nil {
		f.cal = *cfg.Calibration
	}
	f.tph, f.hcal = f.cal.registers()
	// The fake computes with what its registers hold (H4 and H5 are 12 bit).
	f.cal = parseCalibration(f.tph[:], f.hcal[:])
	f.chipID = cfg.ChipID
	f.resetLocked()
	// The device has been powered for a while: its power-on NVM copy is over.
	f.nvmUntil = time.Time{}
	return f
}

// Addr returns the device's I2C address.
func (f *Fake) Addr() uint16 { return f.cfg.Addr }

// Model returns the signal model behind the fake.
func (f *Fake) Model() *Model { return f.model }

// String implements i2c.Bus.
func (f *Fake) String() string { return fmt.Sprintf("fake-bme280-i2c(0x%02x)", f.cfg.Addr) }

// SetSpeed implements i2c.Bus; the fake accepts any speed up to 3.4 MHz
// (high-speed mode, datasheet section 6.2).
func (f *Fake) SetSpeed(hz physic.Frequency) error {
	if hz <= 0 || hz > 3400*physic.KiloHertz {
		return fmt.Errorf("hw: fake bus: unsupported speed %s", hz)
	}
	return nil
}

// Close releases transactions blocked on a stall; later transactions fail
// with ErrClosed.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.done)
	}
	return nil
}

// Tx implements i2c.Bus. A register read is w = [reg] with len(r) bytes read
// from consecutive registers (auto-increment); a write is w = [reg, value,
// reg, value, ...] with r empty.
func (f *Fake) Tx(addr uint16, w, r []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stats.Tx++
	err := f.tx(addr, w, r)
	if err != nil {
		f.stats.Failed++
	}
	return err
}

func (f *Fake) tx(addr uint16, w, r []byte) error {
	for f.stall != nil && !f.closed {
		if err := f.waitStall(); err != nil {
			return err
		}
	}
	if f.closed {
		return ErrClosed
	}
	if f.failN > 0 {
		f.failN--
		return fmt.Errorf("hw: fake bus: injected fault at 0x%02x: %w", addr, f.failErr)
	}
	if addr != f.cfg.Addr {
		return fmt.Errorf("hw: fake bus: no device at 0x%02x: %w", addr, ErrNACK)
	}
	f.advance(f.cfg.Now())
	switch {
	case len(r) > 0:
		if len(w) != 1 {
			return fmt.Errorf("hw: fake bus: a read needs exactly one register address, got %d bytes", len(w))
		}
		if int(w[0])+len(r) > 0x100 {
			return fmt.Errorf("hw: fake bus: reading %d bytes at 0x%02x runs past register 0xFF", len(r), w[0])
		}
		if end := int(w[0]) + len(r); f.cfg.Now().Before(f.nvmUntil) &&
			(int(w[0]) < regCalib1+26 && end > regCalib1 || int(w[0]) < regCalib2+7 && end > regCalib2) {
			f.stats.NVMCopyReads++
		}
		for i := range r {
			r[i] = f.reg(w[0] + byte(i))
		}
	case len(w)%2 != 0:
		return fmt.Errorf("hw: fake bus: a write needs (register, value) pairs, got %d bytes", len(w))
	default:
		for i := 0; i < len(w); i += 2 {
			f.write(w[i], w[i+1])
		}
	}
	return nil
}

// waitStall blocks, with f.mu released, until the stall is released, the bus
// is closed or StallTimeout passes.
func (f *Fake) waitStall() error {
	stall, done := f.stall, f.done
	if f.blocked != nil {
		close(f.blocked)
		f.blocked = nil
	}
	var timeout <-chan time.Time
	if f.cfg.StallTimeout > 0 {
		t := time.NewTimer(f.cfg.StallTimeout)
		defer t.Stop()
		timeout = t.C
	}
	f.mu.Unlock()
	defer f.mu.Lock()
	select {
	case <-stall:
		return nil
	case <-done:
		return ErrClosed
	case <-timeout:
		return ErrStallTimeout
	}
}

func (f *Fake) isBME() bool { return f.chipID == ChipIDBME280 }

// reg returns the value of one register.
func (f *Fake) reg(a byte) byte {
	switch {
	case a >= regCalib1 && a < regCalib1+26:
		if a == 0xA1 && !f.isBME() {
			return 0
		}
		return f.tph[a-regCalib1]
	case a == regChipID:
		return f.chipID
	case a >= regCalib2 && a < regCalib2+7:
		if !f.isBME() {
			return 0
		}
		return f.hcal[a-regCalib2]
	case a == regCtrlHum:
		if !f.isBME() {
			return 0
		}
		return f.ctrlHum
	case a == regStatus:
		return f.status()
	case a == regCtrlMeas:
		return f.ctrl
	case a == regConfig:
		return f.config
	case a >= regData && a < regData+8:
		if a >= regData+6 && !f.isBME() {
			return 0
		}
		return f.data[a-regData]
	}
	return 0
}

// NVM copy times (status bit 0, im_update). After a power-on or soft reset
// the trimming data are copied within the start-up time, 2 ms (datasheet
// table 1, t_startup; Bosch's BME280_SensorAPI waits that long after a soft
// reset before it polls the bit). The datasheet says the copy is also made
// before every conversion but gives no duration; 50 µs at the start of each
// measurement is pilake's assumption.
const (
	nvmCopyReset      = 2 * time.Millisecond
	nvmCopyConversion = 50 * time.Microsecond
)

// status returns register 0xF3: bit 3 "measuring" while a conversion runs,
// bit 0 "im_update" while the NVM is copied to the image registers (for
// nvmCopyReset after a reset, and the first nvmCopyConversion of each
// measurement).
func (f *Fake) status() byte {
	now := f.cfg.Now()
	var st byte
	if now.Before(f.nvmUntil) {
		st |= 1
	}
	switch f.mode {
	case modeForced:
		if now.Before(f.next) {
			st |= 1 << 3
			if now.Before(f.next.Add(nvmCopyConversion - f.tMeas)) {
				st |= 1
			}
		}
	case modeNormal:
		if now.Before(f.start) {
			break
		}
		if in := now.Sub(f.start) % f.period; in < f.tMeas {
			st |= 1 << 3
			if in < nvmCopyConversion {
				st |= 1
			}
		}
	}
	return st
}

func (f *Fake) write(reg, v byte) {
	switch reg {
	case regReset:
		if v == resetWord {
			f.resetLocked()
		}
	case regCtrlHum:
		if f.isBME() {
			f.ctrlHum = v & 0x07 // takes effect at the next ctrl_meas write
		}
	case regCtrlMeas:
		f.ctrl = v
		if f.isBME() {
			f.osrsH = f.ctrlHum
		} else {
			f.osrsH = 0
		}
		f.setMode(mode(v&3), f.cfg.Now())
	case regConfig:
		// Datasheet 5.4.6: writes to config in normal mode may be ignored.
		// By default the fake ignores them (see AcceptConfigInNormalMode).
		if f.mode == modeNormal && !f.cfg.AcceptConfigInNormalMode {
			f.stats.IgnoredConfigWrites++
			return
		}
		f.config = v &^ 0x02
		// Datasheet 3.4.4: writing the filter setting resets the filter.
		f.filtInit = [2]bool{}
		if f.mode == modeNormal {
			// The measurement under way or due next keeps its time; the
			// new standby time applies after it.
			f.period = f.tMeas + standbyTime(f.config>>5, f.isBME())
			f.start = f.next.Add(-f.tMeas)
		}
	}
}

func (f *Fake) setMode(m mode, now time.Time) {
	if m == 2 {
		m = modeForced // 01 and 10 both mean forced
	}
	f.mode = m
	f.tMeas = measureTime(osrsCount(f.ctrl>>5), osrsCount(f.ctrl>>2), osrsCount(f.osrsH), f.cfg.MaxTiming)
	switch m {
	case modeForced:
		f.next = now.Add(f.tMeas)
	case modeNormal:
		f.period = f.tMeas + standbyTime(f.config>>5, f.isBME())
		f.start = now
		f.next = now.Add(f.tMeas)
	}
}

// resetLocked puts every register back to its power-on value.
func (f *Fake) resetLocked() {
	f.ctrlHum, f.osrsH, f.ctrl, f.config = 0, 0, 0, 0
	f.mode = modeSleep
	f.data = [8]byte{0x80, 0, 0, 0x80, 0, 0, 0x80, 0}
	f.filtInit = [2]bool{}
	f.truth = Sample{Seq: f.seq}
	f.stats.Resets++
	f.nvmUntil = f.cfg.Now().Add(nvmCopyReset)
}

// advance runs the conversions that completed up to now.
func (f *Fake) advance(now time.Time) {
	switch f.mode {
	case modeNormal:
		if now.Before(f.next) {
			return
		}
		n := int64(now.Sub(f.next)/f.period) + 1
		if n > maxCatchUp {
			f.next = f.next.Add(time.Duration(n-maxCatchUp) * f.period)
			n = maxCatchUp
		}
		for i := int64(0); i < n; i++ {
			f.convert(f.next, i == n-1)
			f.next = f.next.Add(f.period)
		}
	case modeForced:
		if now.Before(f.next) {
			return
		}
		f.convert(f.next, true)
		f.mode = modeSleep
		f.ctrl &^= 3
	}
}

// convert performs one conversion completing at t: the model's environment
// plus sensor noise, the IIR filter, and (if publish) the data registers.
func (f *Fake) convert(t time.Time, publish bool) {
	f.stats.Conversions++
	env := f.env(t)
	ns := t.UnixNano()
	osT, osP, osH := f.ctrl>>5&7, f.ctrl>>2&7, f.osrsH&7
	coef := filterCoef(f.config >> 2)
	var v Values
	var ok [3]bool
	if osT != 0 {
		x := env.TempC + noiseTemp(osrsCount(osT))*f.model.gauss(chTemp, ns)
		v.TempC, ok[0] = f.filter(0, x, coef), true
	}
	if osP != 0 {
		x := env.PressPa + noisePress(osrsCount(osP))*f.model.gauss(chPress, ns)
		v.PressPa, ok[1] = f.filter(1, x, coef), true
	}
	if osH != 0 {
		x := env.HumRH + noiseHum(osrsCount(osH))*f.model.gauss(chHum, ns)
		v.HumRH, ok[2] = clamp(x, 0, 100), true
	}
	if f.frozen {
		return
	}
	f.seq++
	if !publish {
		return // a later conversion overwrites the registers in this catch-up
	}
	// ADC resolution: 20 bit with the filter on, else 16 + (osrs - 1) bit
	// (datasheet 3.4.2, 3.4.3).
	stepT, stepP := int32(1), int32(1)
	if coef == 1 {
		stepT, stepP = adcStep(osT), adcStep(osP)
	}
	rawT, rawP, rawH := int32(resetRaw20), int32(resetRaw20), int32(resetRaw16)
	var tFine int32
	if ok[0] {
		rawT = f.cal.rawTemp(v.TempC, stepT)
		tFine = f.cal.tFine(rawT)
	} else {
		// Temperature skipped: pressure and humidity still depend on the
		// die temperature; use the environment's.
		tFine = f.cal.tFine(f.cal.rawTemp(env.TempC, 1))
	}
	if ok[1] {
		rawP = f.cal.rawPress(v.PressPa, tFine, stepP)
	}
	if ok[2] {
		rawH = f.cal.rawHum(v.HumRH, tFine)
	}
	f.lastTFine = tFine
	put20(f.data[0:3], rawP)
	put20(f.data[3:6], rawT)
	f.data[6], f.data[7] = byte(rawH>>8), byte(rawH)
	f.truth = Sample{Values: v, Time: t, Seq: f.seq}
}

// env returns the noise-free environment at t: FakeConfig.Env or the model's.
func (f *Fake) env(t time.Time) Values {
	if f.cfg.Env == nil {
		return f.model.Env(t)
	}
	v := f.cfg.Env(t)
	v.HumRH = clamp(v.HumRH, 0, 100)
	return v
}

// filter applies the IIR filter of datasheet 3.4.4 to channel ch:
// new = (old·(c−1) + x)/c, initialised with the first value after a reset
// or a filter-setting write.
func (f *Fake) filter(ch int, x, coef float64) float64 {
	if coef <= 1 || !f.filtInit[ch] {
		f.filt[ch], f.filtInit[ch] = x, true
		return x
	}
	f.filt[ch] = (f.filt[ch]*(coef-1) + x) / coef
	return f.filt[ch]
}

func put20(b []byte, v int32) {
	b[0], b[1], b[2] = byte(v>>12), byte(v>>4), byte(v<<4)
}

// Truth returns what the data registers hold now, in physical units.
func (f *Fake) Truth() Sample {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advance(f.cfg.Now())
	return f.truth
}

// Resolution returns the step between adjacent values the sensor can output
// around its current reading, per quantity, for the current ADC resolution:
// a driver's reading is within this of Truth.
func (f *Fake) Resolution() Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advance(f.cfg.Now())
	rawP, rawT, rawH := rawValues(&f.data)
	stepT, stepP := int32(1), int32(1)
	if filterCoef(f.config>>2) == 1 {
		stepT, stepP = adcStep(f.ctrl>>5&7), adcStep(f.ctrl>>2&7)
	}
	tf := f.cal.tFine(rawT)
	res := Values{
		// The output is in 0.01 °C, but t_fine (used by P and H) is finer.
		TempC:   math.Max(0.01, stepSize(rawT, stepT, func(r int32) float64 { return float64(f.cal.tFine(r)) / 5120 })),
		PressPa: stepSize(rawP, stepP, func(r int32) float64 { return float64(f.cal.press(r, tf)) / 256 }),
		HumRH:   f.cal.humStep(rawH, tf),
	}
	// The compensated output itself is quantised (1/256 Pa, 1/1024 %RH).
	res.PressPa = math.Max(res.PressPa, 1.0/256)
	res.HumRH = math.Max(res.HumRH, 1.0/1024)
	return res
}

// stepSize returns the largest output change between r and its neighbours
// one ADC step away.
func stepSize(r, step int32, f func(int32) float64) float64 {
	v := f(r)
	return math.Max(math.Abs(f(r+step)-v), math.Abs(v-f(r-step)))
}

// Stats returns the fake's counters.
func (f *Fake) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stats
}
