package wire

// Encoding selects how a batch is serialised.
type Encoding uint8

const (
	// Binary is format v1 (columnar, delta-of-delta, CRC-32C). The default.
	Binary Encoding = iota
	// BinaryZstd is format v1 with a zstd-compressed body, used only when it is smaller.
	BinaryZstd
	// JSON is the Azure-simulator-compatible JSON array.
	JSON
)

// String returns the name used in configuration and IoT Hub message properties.
func (e Encoding) String() string {
	switch e {
	case Binary:
		return "pilake-v1"
	case BinaryZstd:
		return "pilake-v1+zstd"
	case JSON:
		return "json"
	}
	return "unknown"
}

// Encoder appends encoded batches to a buffer, reusing its scratch space so
// that steady-state encoding does not allocate. An Encoder is not safe for
// concurrent use.
//
//	func (e *Encoder) Append(dst []byte, b *Batch) ([]byte, error)
//
// Decode parses data (binary v1, with or without zstd, or JSON) into b,
// reusing b.Readings' capacity, and validates it (Batch.Validate).
//
//	func Decode(data []byte, b *Batch) error
