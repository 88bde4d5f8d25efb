package stages

import (
	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/schema"
)

// bronzeJob is work for the bronze encoder: a batch's readings (folded
// already; the encoder is their last reader), or, with cut set, the end of an
// epoch: the encoder sends the epoch's writer on cut and goes on with next.
type bronzeJob struct {
	readings []wire.Reading
	tmpl     schema.BronzeRow
	flags    uint8       // the batch's wire flags (which values it has)
	batch    *wire.Batch // released once the readings are encoded, if set
	cut      chan<- *delta.BronzeWriter
	next     *delta.BronzeWriter
}

// encodeBronze writes the readings of jobs to bw (then to each cut's next
// writer), in order, until jobs is closed.
func encodeBronze(jobs <-chan bronzeJob, bw *delta.BronzeWriter, release func(*wire.Batch)) {
	for j := range jobs {
		if j.cut != nil {
			j.cut <- bw
			bw = j.next
			continue
		}
		bw.WriteFlags(j.readings, &j.tmpl, j.flags)
		if j.batch != nil {
			release(j.batch)
		}
	}
}
