package live

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/dashboard/series"
)

// Limits on one upstream live message.
const (
	// MaxMessageBytes is the largest live message accepted.
	MaxMessageBytes = 1 << 20
	// MaxRows is the most silver or gold rows accepted in one message.
	MaxRows = 4096
)

// ErrBadUpdate is wrapped by every error DecodeLiveUpdate returns.
var ErrBadUpdate = errors.New("bad live update")

// Update is what browsers receive for one upstream live message: one device's
// provisional silver windows and gold moving averages, in the same columnar
// shape as the history endpoint.
type Update struct {
	Device string `json:"device"`
	// CaptureMS is the capture time of the newest reading folded in (unix ms,
	// fractional); the page measures pipeline-to-screen latency from it.
	CaptureMS float64 `json:"capture_ms"`
	// PublishedMS is when the upstream published the update (unix ms).
	PublishedMS float64        `json:"published_ms,omitempty"`
	Silver      series.Columns `json:"silver"`
	Gold        series.Columns `json:"gold"`
}

// DecodeLiveUpdate parses and validates a schema.LiveUpdate published on
// topic and converts it to an Update, keeping gold rows of moving-average
// length goldN. Rows with non-finite values, or of another device, are
// rejected with the whole message: the collector never sends them, so their
// presence means the message is not to be trusted.
func DecodeLiveUpdate(topic string, payload []byte, goldN int32) (Update, error) {
	if len(payload) > MaxMessageBytes {
		return Update{}, fmt.Errorf("%w: %d bytes > %d", ErrBadUpdate, len(payload), MaxMessageBytes)
	}
	dev, ok := wire.DeviceFromTopic(topic)
	if !ok || topic != wire.LiveTopic(dev) || !wire.ValidDeviceID(dev) {
		return Update{}, fmt.Errorf("%w: topic %q is not a live topic", ErrBadUpdate, topic)
	}
	var lu schema.LiveUpdate
	if err := json.Unmarshal(payload, &lu); err != nil {
		return Update{}, fmt.Errorf("%w: decoding JSON: %w", ErrBadUpdate, err)
	}
	if lu.Device != dev {
		return Update{}, fmt.Errorf("%w: device %q on topic of %q", ErrBadUpdate, lu.Device, dev)
	}
	if len(lu.Silver) > MaxRows || len(lu.Gold) > MaxRows {
		return Update{}, fmt.Errorf("%w: %d silver and %d gold rows (max %d)", ErrBadUpdate, len(lu.Silver), len(lu.Gold), MaxRows)
	}
	if lu.NewestCaptureUS <= 0 {
		return Update{}, fmt.Errorf("%w: newest_capture_us %d", ErrBadUpdate, lu.NewestCaptureUS)
	}
	u := Update{
		Device:      dev,
		CaptureMS:   float64(lu.NewestCaptureUS) / 1000,
		PublishedMS: float64(lu.PublishedUS) / 1000,
		Silver:      series.Empty(),
		Gold:        series.Empty(),
	}
	if lu.PublishedUS < 0 {
		u.PublishedMS = 0
	}
	for i := range lu.Silver {
		r := &lu.Silver[i].SilverRow
		if r.Device != "" && r.Device != dev {
			return Update{}, fmt.Errorf("%w: silver row of device %q in update of %q", ErrBadUpdate, r.Device, dev)
		}
		if !u.Silver.AppendSilver(r) {
			return Update{}, fmt.Errorf("%w: silver window %d has a non-finite value", ErrBadUpdate, r.WindowStart)
		}
	}
	for i := range lu.Gold {
		r := &lu.Gold[i]
		if r.Device != "" && r.Device != dev {
			return Update{}, fmt.Errorf("%w: gold row of device %q in update of %q", ErrBadUpdate, r.Device, dev)
		}
		if r.N != goldN {
			continue
		}
		if !u.Gold.AppendGold(r) {
			return Update{}, fmt.Errorf("%w: gold window %d has a non-finite value", ErrBadUpdate, r.WindowStart)
		}
	}
	u.Silver.Sort()
	u.Gold.Sort()
	u.Silver.Normalize()
	u.Gold.Normalize()
	return u, nil
}
