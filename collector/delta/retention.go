package delta

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Table properties (metaData.configuration) that govern how long a table
// keeps its history. Every engine that maintains the table (Spark's VACUUM
// and log cleanup, delta-rs, pilake) reads them from the table, so the
// retention pilake chooses is the table's, not a setting of one program.
const (
	// PropDeletedFileRetention: how long a removed data file (a tombstone)
	// is kept for readers of older versions and for VACUUM's safety.
	PropDeletedFileRetention = "delta.deletedFileRetentionDuration"
	// PropLogRetention: how long log entries (commits, checkpoints) are
	// kept, i.e. how far back time travel reaches.
	PropLogRetention = "delta.logRetentionDuration"
	// PropCheckpointInterval: commits between checkpoints.
	PropCheckpointInterval = "delta.checkpointInterval"
)

// Delta's own defaults, used when a table does not set the property.
const (
	DeltaDeletedFileRetention = 7 * 24 * time.Hour
	DeltaLogRetention         = 30 * 24 * time.Hour
	DeltaCheckpointInterval   = 10
)

// Retention is a table's retention settings, as its properties say.
type Retention struct {
	DeletedFiles       time.Duration // delta.deletedFileRetentionDuration
	Log                time.Duration // delta.logRetentionDuration
	CheckpointInterval int           // delta.checkpointInterval
}

// Retention returns the snapshot's retention settings: its table
// properties, Delta's defaults where a property is absent or unreadable.
func (s *Snapshot) Retention() Retention {
	r := Retention{DeletedFiles: DeltaDeletedFileRetention, Log: DeltaLogRetention, CheckpointInterval: DeltaCheckpointInterval}
	conf := s.Metadata.Configuration
	if d, err := ParseInterval(conf[PropDeletedFileRetention]); err == nil && d > 0 {
		r.DeletedFiles = d
	}
	if d, err := ParseInterval(conf[PropLogRetention]); err == nil && d > 0 {
		r.Log = d
	}
	if n, err := strconv.Atoi(strings.TrimSpace(conf[PropCheckpointInterval])); err == nil && n > 0 {
		r.CheckpointInterval = n
	}
	return r
}

// Properties returns r as table properties (Delta's CalendarInterval
// syntax, "interval 2 days"), leaving out zero fields.
func (r Retention) Properties() map[string]string {
	m := map[string]string{}
	if r.DeletedFiles > 0 {
		m[PropDeletedFileRetention] = FormatInterval(r.DeletedFiles)
	}
	if r.Log > 0 {
		m[PropLogRetention] = FormatInterval(r.Log)
	}
	if r.CheckpointInterval > 0 {
		m[PropCheckpointInterval] = strconv.Itoa(r.CheckpointInterval)
	}
	return m
}

var intervalUnits = []struct {
	names []string
	d     time.Duration
}{
	{[]string{"week", "weeks"}, 7 * 24 * time.Hour},
	{[]string{"day", "days"}, 24 * time.Hour},
	{[]string{"hour", "hours"}, time.Hour},
	{[]string{"minute", "minutes"}, time.Minute},
	{[]string{"second", "seconds"}, time.Second},
	{[]string{"millisecond", "milliseconds"}, time.Millisecond},
	{[]string{"microsecond", "microseconds"}, time.Microsecond},
}

// ParseInterval parses a Delta interval property ("interval 7 days",
// "interval 1 day 12 hours", "30 days"): pairs of an integer and a unit
// from microseconds to weeks, optionally after the word "interval".
func ParseInterval(s string) (time.Duration, error) {
	f := strings.Fields(strings.ToLower(s))
	if len(f) > 0 && f[0] == "interval" {
		f = f[1:]
	}
	if len(f) == 0 || len(f)%2 != 0 {
		return 0, fmt.Errorf("parsing interval %q: want \"interval N unit\"", s)
	}
	var d time.Duration
	for i := 0; i < len(f); i += 2 {
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("parsing interval %q: %q is not a count", s, f[i])
		}
		var unit time.Duration
		for _, u := range intervalUnits {
			for _, name := range u.names {
				if f[i+1] == name {
					unit = u.d
				}
			}
		}
		if unit == 0 {
			return 0, fmt.Errorf("parsing interval %q: unknown unit %q", s, f[i+1])
		}
		if n > int64(1<<62)/int64(unit) {
			return 0, fmt.Errorf("parsing interval %q: too long", s)
		}
		d += time.Duration(n) * unit
	}
	return d, nil
}

// FormatInterval renders d in Delta's interval syntax, in the largest unit
// that divides it ("interval 2 days", "interval 36 hours").
func FormatInterval(d time.Duration) string {
	for _, u := range intervalUnits[1:] { // days and below: Spark prints days, not weeks
		if d%u.d == 0 {
			return fmt.Sprintf("interval %d %s", d/u.d, u.names[1])
		}
	}
	return fmt.Sprintf("interval %d microseconds", d/time.Microsecond)
}
