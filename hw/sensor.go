package hw

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
	"periph.io/x/host/v3"
)

// Errors of the sensor path.
var (
	// ErrBMP280 means the device is a BMP280: temperature and pressure, no
	// humidity. NewSensor accepts it only when allowed.
	ErrBMP280 = errors.New("device is a BMP280 (chip id 0x58), which has no humidity sensor")
	// ErrNotBME280 means the chip id is neither a BME280's nor a BMP280's.
	ErrNotBME280 = errors.New("device is not a BME280")
	// ErrSensorReset means the sensor lost its configuration (power glitch
	// or soft reset): it sleeps and its data registers hold reset values.
	// Call Sensor.Reinit.
	ErrSensorReset = errors.New("sensor was reset: its configuration is gone and its data registers hold reset values")
	// ErrNotReady means the sensor is configured but has not completed a
	// conversion yet, so its data registers still hold their reset values
	// (0x80000, 0x8000), which would compensate to plausible-looking
	// nonsense (about 26 °C, 82 kPa, 70 %RH with typical calibration). It
	// lasts one measurement time (8 ms at ×1, up to 113 ms at ×16) after
	// NewSensor or Reinit. Skip the reading; it is not a bus fault.
	ErrNotReady = errors.New("sensor has not completed a conversion since it was configured")
	// ErrNVMCopy means the sensor kept status bit 0 (im_update) set after a
	// reset for longer than Bosch's driver waits (5 × 2 ms): its trimming
	// data are not readable yet.
	ErrNVMCopy = errors.New("sensor is still copying its trimming data from NVM (status im_update set)")
	// ErrBadAddress means an address other than 0x76 or 0x77.
	ErrBadAddress = errors.New("a BME280 answers at 0x76 (SDO to GND) or 0x77 (SDO to VDDIO) only")
)

// OpenConfig says which sensor to open.
type OpenConfig struct {
	// Bus is the periph I2C bus name ("I2C1", "/dev/i2c-1", "1"); "" opens
	// the first bus.
	Bus string
	// Addr is 0x76 (default) or 0x77.
	Addr uint16
	// Opts configures the driver. Use normal mode for polling (Filter !=
	// NoFilter and Standby != 0): in forced mode every Sense sleeps for a
	// whole conversion.
	Opts bmxx80.Opts
	// AllowBMP280 accepts a BMP280, whose readings then have no humidity
	// (Sensor.HasHumidity is false; the agent sets wire.FlagNoHumidity).
	// Without it a BMP280 is an error (ErrBMP280).
	AllowBMP280 bool
}

// Sensor is a BME280 (or an allowed BMP280) behind periph's bmxx80 driver,
// on a real or a fake bus. It checks the chip id before the driver touches
// the device, detects a sensor reset, and can initialise the sensor again.
type Sensor struct {
	bus      i2c.Bus
	addr     uint16
	opts     bmxx80.Opts
	allowBMP bool
	closer   func() error

	// reads counts Sense calls; every checkEvery-th one also checks the
	// control registers (see Sense).
	reads      atomic.Uint32
	checkEvery uint32

	mu       sync.Mutex
	dev      *bmxx80.Dev
	chipID   byte
	cal      Calibration
	resetEnv physic.Env // what the driver returns from reset-value registers
}

// Register addresses as write buffers, shared so that ReadFixed's Tx does
// not allocate. Buses only read them.
var (
	txData   = []byte{regData}
	txCtrl   = []byte{regCtrlHum}
	txStatus = []byte{regStatus}
)

// Fixed is one reading in the BME280's fixed-point compensation outputs,
// the units of wire.Reading.
type Fixed struct {
	// Temp is the temperature in 0.01 °C.
	Temp int32
	// Press is the pressure in Pa/256; 0 with pressure oversampling Off.
	Press uint32
	// Hum is the relative humidity in %RH/1024; 0 without humidity.
	Hum uint32
	// Raw holds the data registers 0xF7..0xFE as read (0xFD..0xFE are 0
	// on a BMP280). Unchanged Raw means the sensor has not converted since
	// the previous read (or produced the very same ADC values).
	Raw [8]byte
}

// Open initialises periph's host drivers, opens the I2C bus and the sensor on
// it (see NewSensor). Close the Sensor to close the bus.
func Open(cfg OpenConfig) (*Sensor, error) {
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("hw: initialising periph host drivers: %w", err)
	}
	b, err := i2creg.Open(cfg.Bus)
	if err != nil {
		name := cfg.Bus
		if name == "" {
			name = "(first bus)"
		}
		return nil, fmt.Errorf("hw: opening I2C bus %s: %w (is I2C enabled, e.g. raspi-config → Interface Options → I2C, and is the user in the i2c group?)", name, err)
	}
	s, err := NewSensor(b, cfg.Addr, &cfg.Opts, cfg.AllowBMP280)
	if err != nil {
		b.Close()
		return nil, err
	}
	s.closer = b.Close
	return s, nil
}

// NewSensor reads the chip id with a raw transaction, rejects anything but a
// BME280 (and a BMP280 unless allowBMP280) with an error that says what was
// found, then initialises periph's bmxx80 driver with opts. addr 0 means
// 0x76. The agent uses it for the real bus and for the fake alike.
func NewSensor(bus i2c.Bus, addr uint16, opts *bmxx80.Opts, allowBMP280 bool) (*Sensor, error) {
	if addr == 0 {
		addr = 0x76
	}
	if addr != 0x76 && addr != 0x77 {
		return nil, fmt.Errorf("hw: address 0x%02x: %w", addr, ErrBadAddress)
	}
	s := &Sensor{bus: bus, addr: addr, opts: *opts, allowBMP: allowBMP280, checkEvery: defaultCheckEvery}
	if err := s.Reinit(); err != nil {
		return nil, err
	}
	return s, nil
}

// CheckChip reads the chip id at addr and says whether pilake can use the
// device: nil for a BME280, an error wrapping ErrBMP280 for a BMP280 unless
// allowBMP280, ErrNotBME280 for anything else, and the bus error (with a
// hint) when nothing answers.
func CheckChip(bus i2c.Bus, addr uint16, allowBMP280 bool) (chipID byte, err error) {
	var id [1]byte
	if err := bus.Tx(addr, []byte{regChipID}, id[:]); err != nil {
		return 0, fmt.Errorf("hw: reading the chip id of the device at 0x%02x on %s: %w (nothing at this address? a BME280 is at 0x76 or 0x77; check wiring and power)", addr, bus, err)
	}
	switch id[0] {
	case ChipIDBME280:
		return id[0], nil
	case ChipIDBMP280:
		if allowBMP280 {
			return id[0], nil
		}
		return id[0], fmt.Errorf("hw: the device at 0x%02x on %s: %w; pilake needs a BME280 for humidity, or allow a BMP280 (agent flag --allow-bmp280) to record temperature and pressure only", addr, bus, ErrBMP280)
	}
	what := ""
	switch id[0] {
	case 0x55:
		what = " (a BMP180)"
	case 0x61:
		what = " (a BME680)"
	case 0x00, 0xFF:
		what = " (bus or wiring fault?)"
	}
	return id[0], fmt.Errorf("hw: the device at 0x%02x on %s has chip id 0x%02x%s: %w (0x60)", addr, bus, id[0], what, ErrNotBME280)
}

// Reinit checks the chip id again, re-reads the calibration and configures
// the sensor: what to do after ErrSensorReset or a run of bus errors.
func (s *Sensor) Reinit() error {
	id, err := CheckChip(s.bus, s.addr, s.allowBMP)
	if err != nil {
		return err
	}
	if err := s.waitNVM(); err != nil {
		return err
	}
	// The reset-value reading, computed from the device's own calibration,
	// lets Sense recognise a reset without an extra transaction per poll.
	var tph [26]byte
	var h [7]byte
	if err := s.bus.Tx(s.addr, []byte{regCalib1}, tph[:]); err != nil {
		return fmt.Errorf("hw: reading calibration at 0x%02x on %s: %w", s.addr, s.bus, err)
	}
	if id == ChipIDBME280 {
		if err := s.bus.Tx(s.addr, []byte{regCalib2}, h[:]); err != nil {
			return fmt.Errorf("hw: reading humidity calibration at 0x%02x on %s: %w", s.addr, s.bus, err)
		}
	}
	dev, err := bmxx80.NewI2C(s.bus, s.addr, &s.opts)
	if err != nil {
		return fmt.Errorf("hw: initialising the sensor at 0x%02x on %s: %w", s.addr, s.bus, err)
	}
	cal := parseCalibration(tph[:], h[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dev, s.chipID, s.cal = dev, id, cal
	s.resetEnv = driverEnv(&cal, resetRaw20, resetRaw20, resetRaw16, s.opts.Pressure != bmxx80.Off, id == ChipIDBME280 && s.opts.Humidity != bmxx80.Off)
	return nil
}

// doSleep is time.Sleep; tests replace it with their manual clock.
var doSleep = time.Sleep

// waitNVM waits while the sensor copies its trimming data from NVM after a
// power-on or reset (status bit 0, im_update; datasheet section 5.4.4), as
// Bosch's BME280_SensorAPI does after a soft reset: up to 5 waits of the
// 2 ms start-up time. Reinit runs after a reset, so the calibration it reads
// next must not be caught mid-copy. The bit is also set briefly before every
// conversion; a sensor that is converting (ctrl_meas mode not sleep) has
// not just been reset, so that is not waited for (Bosch does not either).
func (s *Sensor) waitNVM() error {
	var b [2]byte // 0xF3 status, 0xF4 ctrl_meas
	for try := 0; ; try++ {
		if err := s.bus.Tx(s.addr, txStatus, b[:]); err != nil {
			return fmt.Errorf("hw: reading the status of the sensor at 0x%02x on %s: %w", s.addr, s.bus, err)
		}
		if b[0]&1 == 0 || b[1]&3 != 0 {
			return nil
		}
		if try == 5 {
			return fmt.Errorf("hw: sensor at 0x%02x on %s: %w", s.addr, s.bus, ErrNVMCopy)
		}
		doSleep(nvmCopyReset)
	}
}

// defaultCheckEvery: Sense checks the control registers once per this many
// calls (0.64 s at 400 Hz, 0.4 % more transactions).
const defaultCheckEvery = 256

// Sense reads one measurement through bmxx80 (in normal mode, one 8-byte
// burst read). It returns ErrSensorReset, wrapped, when the sensor has lost
// its configuration (call Reinit), and ErrNotReady before the first
// conversion after a (re)configuration (skip the reading). Bus errors are
// returned as the driver reports them.
//
// Humidity never comes from bmxx80 when it would be wrong: bmxx80 v3.7.4
// decodes dig_H4 and dig_H5 as unsigned, so for a part with bit 11 of
// either set (a negative coefficient, which the datasheet allows) Sense
// reads the data registers once more and compensates them itself, with the
// signed coefficients (one extra 8-byte read per call, on such parts only).
//
// In normal mode a reset is seen at the first read after it (all data
// registers hold reset values). The driver's compensated values hide the raw
// humidity, so a reset in forced mode (where bmxx80 restarts temperature and
// pressure itself but not humidity) is found by the control-register check
// Sense makes every 256 calls.
func (s *Sensor) Sense(e *physic.Env) error {
	s.mu.Lock()
	dev, reset, bme, cal := s.dev, s.resetEnv, s.chipID == ChipIDBME280, s.cal
	s.mu.Unlock()
	if err := dev.Sense(e); err != nil {
		return err
	}
	press := s.opts.Pressure != bmxx80.Off
	hum := bme && s.opts.Humidity != bmxx80.Off
	if hum && !cal.periphAgrees() {
		// bmxx80 reads dig_H4/dig_H5 unsigned: its humidity is wrong for
		// this part. Read the registers bmxx80 just read (or the next
		// conversion's, in normal mode) and compensate all three here.
		var raw [8]byte
		if err := s.bus.Tx(s.addr, txData, raw[:]); err != nil {
			return fmt.Errorf("hw: reading data registers at 0x%02x on %s: %w", s.addr, s.bus, err)
		}
		rawP, rawT, rawH := rawValues(&raw)
		*e = driverEnv(&cal, rawT, rawP, rawH, press, true)
	}
	// A channel holding its reset value is the cue to look at the control
	// registers. Temperature alone is not: 0.01 °C values repeat often.
	if (press && e.Pressure == reset.Pressure) || (hum && e.Humidity == reset.Humidity) || (!press && !hum && e.Temperature == reset.Temperature) {
		return s.checkState(bme, *e == reset)
	}
	if s.reads.Add(1)%s.checkEvery == 0 {
		return s.checkState(bme, false)
	}
	return nil
}

// checkState reads ctrl_hum, status and ctrl_meas after a reading showed
// reset values. A configuration that differs from ours means a reset
// (ErrSensorReset); an intact one with all data at reset values means no
// conversion has completed yet (ErrNotReady); otherwise the reading was a
// real one that happened to equal a reset value.
func (s *Sensor) checkState(bme, allReset bool) error {
	var b [3]byte // 0xF2 ctrl_hum, 0xF3 status, 0xF4 ctrl_meas
	if err := s.bus.Tx(s.addr, txCtrl, b[:]); err != nil {
		return fmt.Errorf("hw: reading the control registers after a reset-value reading: %w", err)
	}
	normal := s.opts.Filter != bmxx80.NoFilter && s.opts.Standby != 0
	wantMeas := byte(s.opts.Temperature)<<5 | byte(s.opts.Pressure)<<2
	if b[2]&^3 != wantMeas || (bme && b[0]&7 != byte(s.opts.Humidity)) || (normal && mode(b[2]&3) != modeNormal) {
		return fmt.Errorf("hw: sensor at 0x%02x on %s (ctrl_meas 0x%02x, ctrl_hum 0x%02x): %w", s.addr, s.bus, b[2], b[0], ErrSensorReset)
	}
	if allReset {
		return fmt.Errorf("hw: sensor at 0x%02x on %s: %w", s.addr, s.bus, ErrNotReady)
	}
	return nil
}

// ReadFixed reads the data registers with one burst read and compensates
// them with the datasheet's integer formulas: the same integers bmxx80's
// Sense computes (a test compares them on every poll; for humidity only when
// dig_H4 and dig_H5 are not negative, see Sense), without the driver's
// two small allocations per call and without the round trip through
// physic units. The agent's steady state is allocation-free with it. Like
// Sense it returns ErrSensorReset or ErrNotReady, wrapped; any channel at its
// raw reset value triggers the control-register check. It only reads, so it
// is for normal mode (in forced mode use Sense, which starts conversions).
func (s *Sensor) ReadFixed(r *Fixed) error {
	s.mu.Lock()
	cal, bme := s.cal, s.chipID == ChipIDBME280
	s.mu.Unlock()
	n := 8
	if !bme {
		n = 6
		r.Raw[6], r.Raw[7] = 0, 0
	}
	if err := s.bus.Tx(s.addr, txData, r.Raw[:n]); err != nil {
		return fmt.Errorf("hw: reading data registers at 0x%02x on %s: %w", s.addr, s.bus, err)
	}
	rawP, rawT, rawH := rawValues(&r.Raw)
	press := s.opts.Pressure != bmxx80.Off
	hum := bme && s.opts.Humidity != bmxx80.Off
	resetT, resetP, resetH := rawT == resetRaw20, press && rawP == resetRaw20, hum && rawH == resetRaw16
	if resetT || resetP || resetH {
		all := resetT && (!press || resetP) && (!hum || resetH)
		if err := s.checkState(bme, all); err != nil {
			return err
		}
	}
	tf := cal.tFine(rawT)
	r.Temp, r.Press, r.Hum = temp(tf), 0, 0
	if press {
		r.Press = cal.press(rawP, tf)
	}
	if hum {
		r.Hum = cal.hum(rawH, tf)
	}
	return nil
}

// HasHumidity reports whether readings include humidity (false for a BMP280
// or with humidity oversampling Off).
func (s *Sensor) HasHumidity() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chipID == ChipIDBME280 && s.opts.Humidity != bmxx80.Off
}

// ChipID returns the chip id read at the last initialisation.
func (s *Sensor) ChipID() byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chipID
}

// Rate returns the sensor's conversion rate for its options.
func (s *Sensor) Rate() Rate { return ConversionRateFor(&s.opts, s.ChipID()) }

// String describes the sensor.
func (s *Sensor) String() string {
	name := "BME280"
	if s.ChipID() == ChipIDBMP280 {
		name = "BMP280"
	}
	return fmt.Sprintf("%s at 0x%02x on %s", name, s.addr, s.bus)
}

// Close closes the bus if Open opened it. It does not halt the sensor, which
// keeps converting in normal mode (a few µA).
func (s *Sensor) Close() error {
	if s.closer == nil {
		return nil
	}
	if err := s.closer(); err != nil {
		return fmt.Errorf("hw: closing I2C bus %s: %w", s.bus, err)
	}
	return nil
}

// parseCalibration decodes the calibration registers (datasheet section
// 4.2.2, table 16). dig_H4 and dig_H5 are signed 12-bit values: bit 11 of
// each is its sign (periph's bmxx80 reads them unsigned; see
// Calibration.periphAgrees).
func parseCalibration(tph, h []byte) Calibration {
	u16 := func(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }
	c := Calibration{
		T1: u16(tph[0:]), T2: int16(u16(tph[2:])), T3: int16(u16(tph[4:])),
		P1: u16(tph[6:]), P2: int16(u16(tph[8:])), P3: int16(u16(tph[10:])), P4: int16(u16(tph[12:])),
		P5: int16(u16(tph[14:])), P6: int16(u16(tph[16:])), P7: int16(u16(tph[18:])), P8: int16(u16(tph[20:])), P9: int16(u16(tph[22:])),
		H1: tph[25], H2: int16(u16(h[0:])), H3: h[2],
		H4: signExtend12(uint16(h[3])<<4 | uint16(h[4]&0xF)),
		H5: signExtend12(uint16(h[5])<<4 | uint16(h[4]>>4)),
		H6: int8(h[6]),
	}
	return c
}

// rawValues decodes the data registers 0xF7..0xFE: 20-bit pressure and
// temperature, 16-bit humidity.
func rawValues(b *[8]byte) (rawP, rawT, rawH int32) {
	rawP = int32(b[0])<<12 | int32(b[1])<<4 | int32(b[2])>>4
	rawT = int32(b[3])<<12 | int32(b[4])<<4 | int32(b[5])>>4
	rawH = int32(b[6])<<8 | int32(b[7])
	return rawP, rawT, rawH
}

// driverEnv returns what bmxx80 reports for the raw values (with the
// datasheet's signed dig_H4/dig_H5, which bmxx80 itself gets wrong when
// negative).
func driverEnv(c *Calibration, rawT, rawP, rawH int32, press, hum bool) physic.Env {
	tf := c.tFine(rawT)
	e := physic.Env{Temperature: physic.Temperature(temp(tf))*10*physic.MilliCelsius + physic.ZeroCelsius}
	if press {
		e.Pressure = physic.Pressure(c.press(rawP, tf)) * 15625 * physic.MicroPascal / 4
	}
	if hum {
		e.Humidity = physic.RelativeHumidity(c.hum(rawH, tf)) * 10000 / 1024 * physic.MicroRH
	}
	return e
}
