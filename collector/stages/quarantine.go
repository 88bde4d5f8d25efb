package stages

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/schema"
)

// quarantined is a rejected input: skewed readings of a batch, or an
// unreadable landing object or part of a segment (raw set).
type quarantined struct {
	name     string
	batch    wire.Batch
	readings []wire.Reading
	raw      []byte // set for undecodable landing objects
	recv     time.Time
	source   string
	reason   string
}

// writeQuarantine stores a rejected input and its reason under _quarantine/,
// named after its landing object so a redo overwrites rather than duplicates.
func (c *committer) writeQuarantine(ctx context.Context, q quarantined) error {
	key := strings.TrimPrefix(q.name, schema.Landing)
	var name string
	var data []byte
	if q.raw != nil {
		name = schema.Quarantine + "landing/" + key
		data = q.raw
	} else {
		name = schema.Quarantine + "skew/" + q.batch.Key() + ".json"
		var err error
		if data, err = landing.EncodeRefused(q.batch, q.readings); err != nil {
			return err
		}
	}
	reason, _ := json.Marshal(map[string]any{
		"reason": q.reason, "source": q.source, "landing": q.name, "received_at": q.recv.UTC().Format(time.RFC3339Nano),
	})
	if err := c.l.Put(ctx, name, data); err != nil {
		return fmt.Errorf("quarantining: %w", err)
	}
	if err := c.l.Put(ctx, name+".reason.json", reason); err != nil {
		return fmt.Errorf("quarantining: %w", err)
	}
	return nil
}
