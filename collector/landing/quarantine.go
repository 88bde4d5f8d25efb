package landing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// Record describes one piece of rejected input.
type Record struct {
	// Reason says, for a human, why the input was rejected.
	Reason string `json:"reason"`
	// Kind is a short machine-readable class (see Kind* constants); the
	// quarantine counter is labelled with it.
	Kind string `json:"kind"`
	// Source is "mqtt", "iothub" or the stage that rejected it ("bronze", ...).
	Source string `json:"source"`
	// Topic is the MQTT topic or routing file the input came from, if any.
	Topic string `json:"topic,omitempty"`
	// ReceivedAt is when the collector received the input.
	ReceivedAt time.Time `json:"received_at"`
	// Size and SHA256 identify the quarantined bytes.
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
}

// Quarantine kinds.
const (
	KindCorrupt        = "corrupt"         // not a well-formed batch
	KindVersion        = "version"         // unknown format version
	KindBadDevice      = "bad_device_id"   // device id breaks the charset/length rule
	KindOutOfRange     = "out_of_range"    // a value outside the sensor's range
	KindInvalid        = "invalid"         // other rule broken (counts, order, sequence)
	KindDeviceMismatch = "device_mismatch" // the transport's device id differs from the batch's
	KindSkew           = "skew"            // timestamps too far from the receive time (stages)
	KindEnvelope       = "envelope"        // an IoT Hub routing record that cannot be read
	KindBadTopic       = "bad_topic"       // an MQTT topic that is not exactly pilake/v1/telemetry/{device}
)

// Kinds lists every kind, for metrics that want all labels present from the start.
var Kinds = []string{KindCorrupt, KindVersion, KindBadDevice, KindOutOfRange, KindInvalid,
	KindDeviceMismatch, KindSkew, KindEnvelope, KindBadTopic}

// Name returns the object names of a quarantined input:
// _quarantine/{yyyy}/{mm}/{dd}/{unix_nano}-{sha256 prefix}.bin and the
// .reason.json beside it.
func Name(receivedAt time.Time, data []byte) (dataName, reasonName string) {
	sum := sha256.Sum256(data)
	t := receivedAt.UTC()
	base := fmt.Sprintf("%s%04d/%02d/%02d/%d-%s", schema.Quarantine, t.Year(), t.Month(), t.Day(),
		t.UnixNano(), hex.EncodeToString(sum[:8]))
	return base + ".bin", base + ".reason.json"
}

// Quarantine sets data aside in l under _quarantine/ with reason, received
// now. Stages use it for readings they reject.
func Quarantine(ctx context.Context, l lake.Lake, source string, data []byte, reason string) error {
	return QuarantineRecord(ctx, l, data, Record{Reason: reason, Kind: KindInvalid, Source: source, ReceivedAt: time.Now()})
}

// EncodeRefused encodes the readings of b that a check refused (b's fields,
// readings in place of its own) for _quarantine/: as the wire format's JSON,
// or, when the refused readings alone break a batch's rules (a gap longer
// than wire.MaxGapUS where accepted readings were between them), as plain
// JSON of the same fields, so what was refused is always kept.
func EncodeRefused(b wire.Batch, readings []wire.Reading) ([]byte, error) {
	b.Readings = readings
	data, err := wire.NewEncoder(wire.JSON).Append(nil, &b)
	if err == nil {
		return data, nil
	}
	if data, err = json.Marshal(&b); err != nil {
		return nil, fmt.Errorf("encoding refused readings: %w", err)
	}
	return data, nil
}

// QuarantineRecord writes data and its record (Size and SHA256 are filled in)
// durably. Writing the same input received at the same instant twice is not
// an error.
func QuarantineRecord(ctx context.Context, l lake.Lake, data []byte, rec Record) error {
	return quarantine(ctx, l.PutIfAbsent, data, rec)
}

func quarantine(ctx context.Context, put func(context.Context, string, []byte) error, data []byte, rec Record) error {
	if rec.ReceivedAt.IsZero() {
		rec.ReceivedAt = time.Now()
	}
	rec.ReceivedAt = rec.ReceivedAt.UTC()
	sum := sha256.Sum256(data)
	rec.Size, rec.SHA256 = len(data), hex.EncodeToString(sum[:])
	dataName, reasonName := Name(rec.ReceivedAt, data)
	js, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding quarantine record: %w", err)
	}
	if err := put(ctx, dataName, data); err != nil && !errors.Is(err, lake.ErrExists) {
		return fmt.Errorf("quarantining input: %w", err)
	}
	if err := put(ctx, reasonName, append(js, '\n')); err != nil && !errors.Is(err, lake.ErrExists) {
		return fmt.Errorf("quarantining input: %w", err)
	}
	return nil
}
