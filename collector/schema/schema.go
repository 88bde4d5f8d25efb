// Package schema defines the lake's layout and the rows of its tables: the
// contract between the collector, which writes them, and the dashboard and
// Databricks, which read them.
//
// Timestamps are microseconds since the Unix epoch, UTC (Delta/Spark
// "timestamp"). Values are SI floats: °C, Pa, %RH. Pressure and humidity
// are nullable (nil): a BMP280 has no humidity channel (wire.FlagNoHumidity)
// and the Azure Raspberry Pi web simulator sends no pressure
// (wire.FlagNoPressure). Aggregates of them (silver, gold, rollups) are
// over the readings that have a value, and null when none has.
package schema

// Object name prefixes in the lake.
const (
	Landing    = "landing/"    // raw batches as received: segments landing/-seg/{date}/{hour}/{instance}-{n}.seg
	Bronze     = "bronze"      // Delta: one row per reading
	Silver     = "silver"      // Delta: one row per device per window (final)
	SilverLate = "silver_late" // Delta: readings that arrived after their window was final
	Gold       = "gold"        // Delta: per-device moving averages of silver
	// Rollup tiers of silver (package collector/rollup): SilverRow rows whose
	// window is 10 s, 1 min or 1 h — per device, the readings' count, min,
	// max and count-weighted mean. A bucket may have more than one row (a
	// correction for windows committed after it was written): its rows
	// combine to the aggregate of its silver rows.
	Silver10s   = "silver_10s"
	Silver1m    = "silver_1m"
	Silver1h    = "silver_1h"
	Checkpoints = "_checkpoints/" // stage progress
	Quarantine  = "_quarantine/"  // rejected input, each with its reason
)

// BronzeRow is one reading. Partitioned by nothing (files are per commit);
// Databricks clusters by device, ts.
type BronzeRow struct {
	Device     string   `parquet:"device" json:"device"`
	TS         int64    `parquet:"ts,timestamp(microsecond)" json:"ts"`
	TempC      float64  `parquet:"temp_c" json:"temp_c"`
	PressurePa *float64 `parquet:"pressure_pa,optional" json:"pressure_pa"` // nil: the reading has none (wire.FlagNoPressure)
	HumidityRH *float64 `parquet:"humidity_rh,optional" json:"humidity_rh"` // nil: the reading has none (wire.FlagNoHumidity)
	Fresh      bool     `parquet:"fresh" json:"fresh"`
	Boot       int64    `parquet:"boot" json:"boot"` // the agent's boot id, as a signed 64-bit integer
	Seq        int64    `parquet:"seq" json:"seq"`   // batch sequence number within the boot
	ReceivedAt int64    `parquet:"received_at,timestamp(microsecond)" json:"received_at"`
	Source     string   `parquet:"source" json:"source"` // "mqtt" or "iothub"
}

// SilverRow is one per-device event-time window (tumbling, default 1 s).
type SilverRow struct {
	Device      string  `parquet:"device" json:"device"`
	WindowStart int64   `parquet:"window_start,timestamp(microsecond)" json:"window_start"`
	WindowEnd   int64   `parquet:"window_end,timestamp(microsecond)" json:"window_end"`
	Count       int64   `parquet:"count" json:"count"`             // readings in the window
	FreshCount  int64   `parquet:"fresh_count" json:"fresh_count"` // of which fresh conversions
	TempAvg     float64 `parquet:"temp_avg" json:"temp_avg"`
	TempMin     float64 `parquet:"temp_min" json:"temp_min"`
	TempMax     float64 `parquet:"temp_max" json:"temp_max"`
	// Pressure and humidity aggregates are over the window's readings that
	// have the value; nil when none has.
	PressureAvg *float64 `parquet:"pressure_avg,optional" json:"pressure_avg"`
	PressureMin *float64 `parquet:"pressure_min,optional" json:"pressure_min"`
	PressureMax *float64 `parquet:"pressure_max,optional" json:"pressure_max"`
	HumidityAvg *float64 `parquet:"humidity_avg,optional" json:"humidity_avg"`
	HumidityMin *float64 `parquet:"humidity_min,optional" json:"humidity_min"`
	HumidityMax *float64 `parquet:"humidity_max,optional" json:"humidity_max"`
}

// SilverLateRow is a reading that arrived after its window was final.
type SilverLateRow struct {
	BronzeRow
	WindowStart int64 `parquet:"window_start,timestamp(microsecond)" json:"window_start"`
	Watermark   int64 `parquet:"watermark,timestamp(microsecond)" json:"watermark"` // the device's watermark when it arrived
}

// GoldRow is the moving average, per device, of the last N silver windows
// ending at WindowStart. One row per (device, window, N); N defaults to 8, 15 and 60.
// Partitioned by device.
type GoldRow struct {
	Device      string  `parquet:"device" json:"device"`
	WindowStart int64   `parquet:"window_start,timestamp(microsecond)" json:"window_start"`
	N           int32   `parquet:"n" json:"n"`             // the moving average's length in windows
	Windows     int32   `parquet:"windows" json:"windows"` // windows actually averaged (< N at the start of a device's history)
	TempC       float64 `parquet:"temp_c" json:"temp_c"`
	// PressurePa and HumidityRH average the windows that have the value
	// (nil when none of them has).
	PressurePa *float64 `parquet:"pressure_pa,optional" json:"pressure_pa"`
	HumidityRH *float64 `parquet:"humidity_rh,optional" json:"humidity_rh"`
}

// Float returns a pointer to v: a present value of a nullable column.
func Float(v float64) *float64 { return &v }

// LiveUpdate is what the collector publishes (JSON, QoS 0) on
// wire.LiveTopic(device) each time it has folded a batch into silver and gold:
// the provisional state of every window the batch touched, and the gold
// moving averages ending at those windows.
type LiveUpdate struct {
	Device string `json:"device"`
	// NewestCaptureUS is the capture time of the newest reading folded in (µs);
	// the dashboard measures pipeline-to-screen latency from it.
	NewestCaptureUS int64 `json:"newest_capture_us"`
	// PublishedUS is when the collector published the update (µs).
	PublishedUS int64 `json:"published_us"`
	// WatermarkUS is the device's watermark (µs): windows ending at or before it are final.
	WatermarkUS int64        `json:"watermark_us"`
	Silver      []LiveSilver `json:"silver"`
	Gold        []GoldRow    `json:"gold"`
}

// LiveSilver is a provisional (or, with Final set, final) silver window.
type LiveSilver struct {
	SilverRow
	Final bool `json:"final"`
}
