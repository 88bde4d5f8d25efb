package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strconv"
	"strings"

	"github.com/pilake/pilake/agent/wire"
)

// The Azure IoT Raspberry Pi web simulator (Azure-Samples/raspberry-pi-web-simulator,
// the reference app's data source) sends one JSON object per message:
//
//	{"messageId":11,"deviceId":"Raspberry Pi Web Client","temperature":25.392375779726308,"humidity":76.39404260045663}
//
// IoT Hub routes it to storage with its system properties; pilake turns each
// such record into a one-reading batch:
//
//   - device: the IoT Hub identity (SystemProperties.connectionDeviceId,
//     which IoT Hub authenticated), mapped to a pilake id by IoTHubDeviceID.
//     The body's deviceId is the simulator's fixed label ("Raspberry Pi Web
//     Client" in every copy of it), so it identifies nothing and is not used.
//   - idempotency key: boot = FNV-64a of the IoT Hub device id and its
//     connectionDeviceGenerationId (a re-created device is a new stream), seq =
//     the enqueued time in IoT Hub's 100 ns ticks. A record routed twice has the
//     same system properties, so it lands once.
//   - time: the enqueued time (the simulator sends none of its own).
//   - values: temperature (°C) and humidity (%RH) in the BME280's fixed point;
//     pressure (Pa, or hPa when 300..1100) when the message has one. The
//     simulator's own messages have none: the batch is flagged
//     wire.FlagNoPressure and the lake stores the reading's pressure as null
//     (silver, gold and the rollups aggregate pressure over the readings that
//     have one).

// ErrNotSimulator means a routing record's body is not a simulator message.
var ErrNotSimulator = errors.New("not a Raspberry Pi simulator message")

// SimulatorMessage is the simulator's message.
type SimulatorMessage struct {
	MessageID   int64    `json:"messageId"`
	DeviceID    string   `json:"deviceId"`
	Temperature *float64 `json:"temperature"`
	Humidity    *float64 `json:"humidity"`
	Pressure    *float64 `json:"pressure"`
}

// maxSimulatorBody bounds a simulator message (the real one is ~120 bytes).
const maxSimulatorBody = 4096

// IsSimulatorMessage reports whether body looks like a simulator message (a
// JSON object); pilake's own batches are binary or a JSON array.
func IsSimulatorMessage(body []byte) bool {
	b := bytes.TrimLeft(body, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

// ParseSimulatorMessage reads one simulator message, strictly: one JSON
// object, messageId a non-negative integer, deviceId a string, temperature
// and humidity numbers, pressure a number or absent/null.
func ParseSimulatorMessage(body []byte) (SimulatorMessage, error) {
	var m SimulatorMessage
	if len(body) > maxSimulatorBody {
		return m, fmt.Errorf("%w: %d bytes, max %d", ErrNotSimulator, len(body), maxSimulatorBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return m, fmt.Errorf("%w: %v", ErrNotSimulator, err)
	}
	if dec.More() {
		return m, fmt.Errorf("%w: more than one JSON value", ErrNotSimulator)
	}
	switch {
	case m.MessageID < 0:
		return m, fmt.Errorf("%w: messageId %d is negative", ErrNotSimulator, m.MessageID)
	case m.Temperature == nil:
		return m, fmt.Errorf("%w: no temperature", ErrNotSimulator)
	case m.Humidity == nil:
		return m, fmt.Errorf("%w: no humidity", ErrNotSimulator)
	}
	return m, nil
}

// IoTHubDeviceID maps an IoT Hub device id (up to 128 ASCII characters of
// letters, digits and - . % _ * ? ! ( ) , : = @ $ ') to a pilake device id,
// reversibly (IoTHubDeviceIDOf undoes it): letters and digits stay, '-' and
// '.' stay except as the first character, and every other byte, '_'
// included, becomes '_' and its two upper-case hex digits:
// "rpi:kitchen" → "rpi_3Akitchen", "Raspberry Pi Web Client" →
// "Raspberry_20Pi_20Web_20Client". Ids whose mapping is longer than
// wire.MaxDeviceIDLen are refused.
func IoTHubDeviceID(id string) (string, error) {
	if id == "" {
		return "", errors.New("empty IoT Hub device id")
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			b.WriteByte(c)
		case (c == '-' || c == '.') && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "_%02X", c)
		}
	}
	out := b.String()
	if !wire.ValidDeviceID(out) {
		return "", fmt.Errorf("IoT Hub device id %q maps to %d characters, max %d", id, len(out), wire.MaxDeviceIDLen)
	}
	return out, nil
}

// IoTHubDeviceIDOf is IoTHubDeviceID's inverse.
func IoTHubDeviceIDOf(pilakeID string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(pilakeID); i++ {
		c := pilakeID[i]
		if c != '_' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(pilakeID) {
			return "", fmt.Errorf("pilake id %q: '_' without two hex digits", pilakeID)
		}
		v, err := strconv.ParseUint(pilakeID[i+1:i+3], 16, 8)
		if err != nil || fmt.Sprintf("%02X", v) != pilakeID[i+1:i+3] {
			return "", fmt.Errorf("pilake id %q: bad escape %q", pilakeID, pilakeID[i:i+3])
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), nil
}

// SimulatorBatch turns a routing record holding a simulator message into a
// pilake batch of one reading (see the comment at the top of this file).
func SimulatorBatch(rec RoutingRecord) (*wire.Batch, error) {
	m, err := ParseSimulatorMessage(rec.Body)
	if err != nil {
		return nil, err
	}
	dev, err := IoTHubDeviceID(rec.DeviceID)
	if err != nil {
		return nil, err
	}
	gen := rec.SystemProperties["connectionDeviceGenerationId"]
	if gen == "" {
		return nil, errors.New("simulator record has no SystemProperties.connectionDeviceGenerationId (its idempotency key)")
	}
	if rec.EnqueuedTime.IsZero() || rec.EnqueuedTime.UnixNano() <= 0 {
		return nil, errors.New("simulator record has no usable EnqueuedTimeUtc (its time and idempotency key)")
	}
	h := fnv.New64a()
	h.Write([]byte("pilake iothub simulator\x00" + rec.DeviceID + "\x00" + gen))
	r := wire.Reading{TimeUS: rec.EnqueuedTime.UnixMicro(), Fresh: true}
	t, ok := fixedPoint(*m.Temperature, 100, wire.MinTemp, wire.MaxTemp)
	if !ok {
		return nil, fmt.Errorf("simulator temperature %g °C outside -40..85", *m.Temperature)
	}
	hu, ok := fixedPoint(*m.Humidity, 1024, 0, wire.MaxHum)
	if !ok {
		return nil, fmt.Errorf("simulator humidity %g %%RH outside 0..100", *m.Humidity)
	}
	r.Temp, r.Hum = int32(t), uint32(hu)
	var flags uint8
	if m.Pressure == nil {
		flags = wire.FlagNoPressure // stored as null
	} else {
		pa := *m.Pressure
		if pa >= 300 && pa <= 1100 {
			pa *= 100 // hPa, as most BME280 sketches send it
		}
		p, ok := fixedPoint(pa, 256, wire.MinPress, wire.MaxPress)
		if !ok {
			return nil, fmt.Errorf("simulator pressure %g outside 30000..110000 Pa (or 300..1100 hPa)", *m.Pressure)
		}
		r.Press = uint32(p)
	}
	b := &wire.Batch{DeviceID: dev, BootID: h.Sum64(), Seq: uint64(rec.EnqueuedTime.UnixNano() / 100), Flags: flags, Readings: []wire.Reading{r}}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return b, nil
}

// fixedPoint converts v to the sensor's fixed point (v·scale rounded) if it
// is finite and within [lo, hi] after conversion.
func fixedPoint(v float64, scale float64, lo, hi int64) (int64, bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	x := math.Round(v * scale)
	if x < float64(lo) || x > float64(hi) {
		return 0, false
	}
	return int64(x), true
}

// RoutedBatch is what the collector lands for a routing record: pilake
// batches as they are, simulator messages converted by SimulatorBatch (and
// encoded). device is the pilake device the batch must be of.
func RoutedBatch(rec RoutingRecord, enc *wire.Encoder) (data []byte, device string, err error) {
	if !IsSimulatorMessage(rec.Body) {
		return rec.Body, rec.DeviceID, nil
	}
	b, err := SimulatorBatch(rec)
	if err != nil {
		return nil, "", err
	}
	data, err = enc.Append(nil, b)
	if err != nil {
		return nil, "", fmt.Errorf("encoding simulator batch: %w", err)
	}
	return data, b.DeviceID, nil
}
