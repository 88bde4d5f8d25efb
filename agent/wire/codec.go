package wire

import "fmt"

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

// DetectEncoding reports the encoding of an encoded batch from its first two
// bytes, without decoding or validating the rest.
func DetectEncoding(data []byte) (Encoding, error) {
	if len(data) == 0 {
		return 0, fmt.Errorf("%w: empty", ErrCorrupt)
	}
	switch data[0] {
	case Version1:
		if len(data) > 1 && data[1]&flagZstd != 0 {
			return BinaryZstd, nil
		}
		return Binary, nil
	case '[', ' ', '\n', '\r', '\t':
		return JSON, nil
	}
	return 0, fmt.Errorf("%w: version byte %#02x", ErrVersion, data[0])
}
