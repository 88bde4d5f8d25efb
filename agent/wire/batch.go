package wire

import (
	"errors"
	"fmt"
)

// Limits enforced by the encoder and the decoder.
const (
	// MaxDeviceIDLen is the longest accepted device id, in bytes.
	MaxDeviceIDLen = 64
	// MaxReadings is the most readings one batch may hold (about 160 s at 400 Hz).
	MaxReadings = 1 << 16
	// MaxEncodedSize is the largest encoded batch accepted by Decode. Azure IoT
	// Hub rejects messages over 256 KB, so no uplink produces more.
	MaxEncodedSize = 256 * 1024
	// MaxGapUS is the longest gap between consecutive readings of a batch (30 min).
	MaxGapUS = 30 * 60 * 1_000_000
)

// Errors wrapped by Decode and Validate, so callers can tell why input was rejected.
var (
	// ErrCorrupt means the bytes are not a well-formed batch (truncated, bad CRC, bad varint).
	ErrCorrupt = errors.New("corrupt batch")
	// ErrVersion means the batch declares a format version this build does not know.
	ErrVersion = errors.New("unsupported batch version")
	// ErrInvalid means the batch is well formed but its content breaks a rule
	// (device id charset or length, reading count, values out of the sensor's range).
	ErrInvalid = errors.New("invalid batch")
	// ErrTooLarge means an encoded batch would exceed MaxEncodedSize; send fewer readings per batch.
	ErrTooLarge = errors.New("encoded batch too large")
)

// Batch flags.
const (
	// FlagClockSynced is set when the agent's wall clock was NTP-synchronised
	// when the batch was captured.
	FlagClockSynced uint8 = 1 << 0
	// FlagNoHumidity is set for a BMP280 (no humidity channel); Hum is then 0.
	FlagNoHumidity uint8 = 1 << 1
	// FlagClockStepped is set on the first batch after the agent's wall
	// clock was stepped (wall minus monotonic moved by 100 ms or more between
	// two readings): the batch before it was cut at the step, and this one's
	// MonoOffsetUS is the new offset. Every reading's TimeUS is its
	// monotonic capture time plus its batch's MonoOffsetUS.
	FlagClockStepped uint8 = 1 << 2
	// FlagNoPressure is set when the readings carry no pressure; Press is
	// then 0. No agent sets it: the collector does for sources without a
	// pressure value (the Azure Raspberry Pi web simulator's messages), and
	// the lake stores their pressure as null.
	FlagNoPressure uint8 = 1 << 3
	// FlagLast is set on the last batch of a boot: the agent stopped
	// cleanly after capturing it, so its stream (device and boot) ends
	// there. Once the collector has every batch of the stream up to this
	// one, it finalises the device's open windows at once; without it, a
	// device's newest windows stay open (across a collector restart too)
	// until its watermark passes them.
	FlagLast uint8 = 1 << 4

	// batchFlags are the flags a Batch may carry.
	batchFlags = FlagClockSynced | FlagNoHumidity | FlagClockStepped | FlagNoPressure | FlagLast
)

// Reading is one poll of the sensor, in the BME280's fixed-point units.
type Reading struct {
	// TimeUS is the wall-clock capture time, microseconds since the Unix epoch (UTC).
	TimeUS int64
	// Temp is the temperature in 0.01 °C (the datasheet's BME280_compensate_T_int32).
	Temp int32
	// Press is the pressure in Pa/256, Q24.8 (BME280_compensate_P_int64).
	Press uint32
	// Hum is the relative humidity in 1/1024 %RH, Q22.10 (bme280_compensate_H_int32).
	Hum uint32
	// Fresh is true when this poll returned a new conversion, false when the
	// sensor had not converted since the previous poll (the values repeat).
	Fresh bool
}

// TempC returns the temperature in degrees Celsius.
func (r Reading) TempC() float64 { return float64(r.Temp) / 100 }

// PressurePa returns the pressure in pascals.
func (r Reading) PressurePa() float64 { return float64(r.Press) / 256 }

// HumidityRH returns the relative humidity in percent.
func (r Reading) HumidityRH() float64 { return float64(r.Hum) / 1024 }

// Batch is the unit an agent sends: consecutive readings of one device.
type Batch struct {
	// DeviceID names the device; see ValidDeviceID.
	DeviceID string
	// BootID is chosen at random each time the agent starts; with Seq it names
	// the batch uniquely, so a redelivery can be recognised.
	BootID uint64
	// Seq numbers batches within one boot, starting at 1, without gaps.
	Seq uint64
	// IntervalUS is the nominal sampling interval in microseconds (2500 at 400 Hz).
	IntervalUS uint32
	// Flags is a set of Flag* bits.
	Flags uint8
	// MonoOffsetUS is wall clock minus the monotonic clock (time since boot)
	// when the first reading was captured, in microseconds. A collector can
	// use it to re-base timestamps of a Pi that booted without a real-time clock.
	MonoOffsetUS int64
	// Readings are in capture order; timestamps never decrease.
	Readings []Reading
}

// Sensor ranges from the BME280 datasheet (operating range, with margin for
// the compensation's own clamps). Values outside are invalid.
const (
	MinTemp  = -4000        // -40.00 °C
	MaxTemp  = 8500         // 85.00 °C
	MinPress = 30000 * 256  // 300 hPa
	MaxPress = 110000 * 256 // 1100 hPa
	MaxHum   = 100 * 1024   // 100 %RH
)

// ValidDeviceID reports whether id is an acceptable device id: 1 to
// MaxDeviceIDLen bytes of ASCII letters, digits, '-', '_' and '.', not starting
// with '.' or '-'. Device ids become parts of object names, so nothing else
// is allowed.
func ValidDeviceID(id string) bool {
	if len(id) == 0 || len(id) > MaxDeviceIDLen {
		return false
	}
	if id[0] == '.' || id[0] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// Validate checks the rules every batch must follow, whatever its encoding:
// a valid device id, 1 to MaxReadings readings, non-decreasing timestamps,
// and values inside the sensor's range. Errors wrap ErrInvalid.
func (b *Batch) Validate() error {
	if !ValidDeviceID(b.DeviceID) {
		return fmt.Errorf("%w: device id %q: want 1-%d of [A-Za-z0-9._-]", ErrInvalid, truncate(b.DeviceID, 80), MaxDeviceIDLen)
	}
	if b.Seq == 0 {
		return fmt.Errorf("%w: sequence number 0", ErrInvalid)
	}
	n := len(b.Readings)
	if n == 0 || n > MaxReadings {
		return fmt.Errorf("%w: %d readings, want 1-%d", ErrInvalid, n, MaxReadings)
	}
	var prev int64
	for i := range b.Readings {
		r := &b.Readings[i]
		if i > 0 && r.TimeUS < prev {
			return fmt.Errorf("%w: reading %d: timestamp goes back by %d µs", ErrInvalid, i, prev-r.TimeUS)
		}
		if i > 0 && r.TimeUS-prev > MaxGapUS {
			return fmt.Errorf("%w: reading %d: %d µs after the previous one, max %d", ErrInvalid, i, r.TimeUS-prev, MaxGapUS)
		}
		prev = r.TimeUS
		if r.Temp < MinTemp || r.Temp > MaxTemp {
			return fmt.Errorf("%w: reading %d: temperature %.2f °C outside -40..85", ErrInvalid, i, r.TempC())
		}
		if b.Flags&FlagNoPressure != 0 {
			if r.Press != 0 {
				return fmt.Errorf("%w: reading %d has pressure but the batch is flagged no-pressure", ErrInvalid, i)
			}
		} else if r.Press < MinPress || r.Press > MaxPress {
			return fmt.Errorf("%w: reading %d: pressure %.0f Pa outside 30000..110000", ErrInvalid, i, r.PressurePa())
		}
		if r.Hum > MaxHum {
			return fmt.Errorf("%w: reading %d: humidity %.2f %%RH over 100", ErrInvalid, i, r.HumidityRH())
		}
	}
	return nil
}

// Key returns the batch's identity, "device/boot/seq" with boot in hex and seq
// zero-padded, suitable as part of an object name once the device id is valid.
func (b *Batch) Key() string {
	return fmt.Sprintf("%s/%016x/%020d", b.DeviceID, b.BootID, b.Seq)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
