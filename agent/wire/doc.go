// Package wire encodes and decodes pilake telemetry batches: the bytes an agent
// publishes and a collector receives.
//
// A batch holds the readings one device captured in one batching interval
// (default 1 s at 400 Hz). Values are carried as the BME280's own fixed-point
// compensation outputs (0.01 °C, Pa/256, 1/1024 %RH), so encoding is lossless
// against what the sensor reported.
//
// Two encodings exist:
//
//   - Binary v1 (the default): columnar, delta-of-delta timestamps, zigzag
//     varint value deltas for fresh readings only, a freshness bitmap, CRC-32C,
//     and optional zstd compression of the body. See format.go for the layout.
//   - JSON: an array of objects shaped like the Azure Raspberry Pi simulator's
//     message ({messageId, deviceId, temperature, humidity}) plus pressure and
//     pilake's own fields, for consumers that already read that message.
//
// Decode detects the encoding from the first byte. Decoders treat their input
// as untrusted: every length is checked before use, and errors wrap
// ErrCorrupt, ErrVersion or ErrInvalid so callers can quarantine with a reason.
//
// The collector's landing acknowledgements to an agent (Ack, on AckTopic)
// are defined here too, with the topic layout (topics.go).
//
// This package depends only on the standard library and klauspost/compress
// (zstd), so the agent binary stays small.
package wire
