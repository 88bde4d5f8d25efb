package delta

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/parquet-go/parquet-go"
)

// OpenParquet opens a Parquet file held in memory after checking what
// parquet-go trusts: the magic bytes and that the footer length fits in the
// file (parquet-go allocates whatever length a corrupt footer claims).
// Files come from the lake: callers must also recover from panics while
// reading (see ReadFiles).
func OpenParquet(data []byte, opts ...parquet.FileOption) (*parquet.File, error) {
	if len(data) < 12 || string(data[:4]) != "PAR1" || string(data[len(data)-4:]) != "PAR1" {
		return nil, fmt.Errorf("%w: not a Parquet file (magic bytes)", ErrCorruptFile)
	}
	footer := int64(binary.LittleEndian.Uint32(data[len(data)-8:]))
	if footer > int64(len(data))-12 {
		return nil, fmt.Errorf("%w: footer of %d bytes in a %d-byte file", ErrCorruptFile, footer, len(data))
	}
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)), opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptFile, err)
	}
	return f, nil
}
