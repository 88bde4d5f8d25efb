// Package schematest holds the lake's row types as pilake wrote them before
// pressure and humidity became nullable (issue 13): every column required.
// Tests write old lakes with them and check that new code reads, compacts,
// rolls up and charts those files beside new ones.
package schematest

// BronzeV1 is a bronze row of an old lake.
type BronzeV1 struct {
	Device     string  `parquet:"device"`
	TS         int64   `parquet:"ts,timestamp(microsecond)"`
	TempC      float64 `parquet:"temp_c"`
	PressurePa float64 `parquet:"pressure_pa"`
	HumidityRH float64 `parquet:"humidity_rh"`
	Fresh      bool    `parquet:"fresh"`
	Boot       int64   `parquet:"boot"`
	Seq        int64   `parquet:"seq"`
	ReceivedAt int64   `parquet:"received_at,timestamp(microsecond)"`
	Source     string  `parquet:"source"`
}

// SilverV1 is a silver row of an old lake.
type SilverV1 struct {
	Device      string  `parquet:"device"`
	WindowStart int64   `parquet:"window_start,timestamp(microsecond)"`
	WindowEnd   int64   `parquet:"window_end,timestamp(microsecond)"`
	Count       int64   `parquet:"count"`
	FreshCount  int64   `parquet:"fresh_count"`
	TempAvg     float64 `parquet:"temp_avg"`
	TempMin     float64 `parquet:"temp_min"`
	TempMax     float64 `parquet:"temp_max"`
	PressureAvg float64 `parquet:"pressure_avg"`
	PressureMin float64 `parquet:"pressure_min"`
	PressureMax float64 `parquet:"pressure_max"`
	HumidityAvg float64 `parquet:"humidity_avg"`
	HumidityMin float64 `parquet:"humidity_min"`
	HumidityMax float64 `parquet:"humidity_max"`
}

// GoldV1 is a gold row of an old lake.
type GoldV1 struct {
	Device      string  `parquet:"device"`
	WindowStart int64   `parquet:"window_start,timestamp(microsecond)"`
	N           int32   `parquet:"n"`
	Windows     int32   `parquet:"windows"`
	TempC       float64 `parquet:"temp_c"`
	PressurePa  float64 `parquet:"pressure_pa"`
	HumidityRH  float64 `parquet:"humidity_rh"`
}
