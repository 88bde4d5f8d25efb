package delta

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// ErrNotPortable is returned by CheckPortable for a Parquet file that uses
// an encoding or page version some engines that read Delta tables cannot
// decode.
var ErrNotPortable = errors.New("parquet file not readable by every engine")

// PortableEncodings are the value encodings that Apache Spark 3.3+'s
// vectorized Parquet reader and Databricks Runtime 13.3+ decode and that
// pilake writes: PLAIN, dictionary (PLAIN_DICTIONARY, RLE_DICTIONARY) and
// DELTA_BINARY_PACKED. Levels are RLE. BYTE_STREAM_SPLIT is not one of them:
// released Spark runtimes fail on it (SPARK-56894 added it in 2026).
var PortableEncodings = []format.Encoding{format.Plain, format.PlainDictionary, format.RLEDictionary, format.DeltaBinaryPacked}

func portableEncoding(e format.Encoding) bool {
	for _, p := range PortableEncodings {
		if e == p {
			return true
		}
	}
	return false
}

// CheckPortable reads a Parquet file's footer and every page header and
// returns an error wrapping ErrNotPortable if a column chunk lists or a page
// uses anything but PortableEncodings (RLE for levels), or a page is not a
// v1 data page or a PLAIN dictionary page. PROTOCOL.md: writers SHOULD use
// DataPageV1 for tables other engines read.
func CheckPortable(data []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("checking parquet pages: %w: %v", ErrCorruptFile, r)
		}
	}()
	f, err := OpenParquet(data)
	if err != nil {
		return fmt.Errorf("checking parquet pages: %w", err)
	}
	md := f.Metadata()
	for g, rg := range md.RowGroups {
		for _, cc := range rg.Columns {
			col := fmt.Sprintf("row group %d column %v", g, cc.MetaData.PathInSchema)
			for _, e := range cc.MetaData.Encoding {
				if !portableEncoding(e) && e != format.RLE {
					return fmt.Errorf("%s: encoding %v: %w", col, e, ErrNotPortable)
				}
			}
			for _, s := range cc.MetaData.EncodingStats {
				if s.PageType == format.DataPageV2 {
					return fmt.Errorf("%s: %d DataPageV2 pages: %w", col, s.Count, ErrNotPortable)
				}
			}
			if err := checkPortablePages(data, &cc.MetaData); err != nil {
				return fmt.Errorf("%s: %w", col, err)
			}
		}
	}
	return nil
}

// checkPortablePages walks a column chunk's page headers.
func checkPortablePages(data []byte, md *format.ColumnMetaData) error {
	start := md.DataPageOffset
	if md.DictionaryPageOffset > 0 && md.DictionaryPageOffset < start {
		start = md.DictionaryPageOffset
	}
	end := start + md.TotalCompressedSize
	if start < 4 || end > int64(len(data)) || start > end {
		return fmt.Errorf("chunk at [%d, %d) outside the file: %w", start, end, ErrCorruptFile)
	}
	var values int64
	for off := start; off < end; {
		r := bytes.NewReader(data[off:end])
		var h format.PageHeader
		if err := thrift.NewDecoder(new(thrift.CompactProtocol).NewReader(r)).Decode(&h); err != nil {
			return fmt.Errorf("page header at %d: %w: %w", off, ErrCorruptFile, err)
		}
		hdr := int64(len(data[off:end]) - r.Len())
		switch h.Type {
		case format.DataPage:
			if !h.DataPageHeader.Valid {
				return fmt.Errorf("page at %d: no data page header: %w", off, ErrCorruptFile)
			}
			dp := h.DataPageHeader.V
			if !portableEncoding(dp.Encoding) {
				return fmt.Errorf("page at %d: encoding %v: %w", off, dp.Encoding, ErrNotPortable)
			}
			if dp.DefinitionLevelEncoding != format.RLE || dp.RepetitionLevelEncoding != format.RLE {
				return fmt.Errorf("page at %d: level encodings %v/%v: %w", off, dp.DefinitionLevelEncoding, dp.RepetitionLevelEncoding, ErrNotPortable)
			}
			values += int64(dp.NumValues)
		case format.DictionaryPage:
			if !h.DictionaryPageHeader.Valid {
				return fmt.Errorf("page at %d: no dictionary page header: %w", off, ErrCorruptFile)
			}
			if e := h.DictionaryPageHeader.V.Encoding; e != format.Plain && e != format.PlainDictionary {
				return fmt.Errorf("page at %d: dictionary encoding %v: %w", off, e, ErrNotPortable)
			}
		default:
			return fmt.Errorf("page at %d: page type %v: %w", off, h.Type, ErrNotPortable)
		}
		if h.CompressedPageSize < 0 {
			return fmt.Errorf("page at %d: negative size: %w", off, ErrCorruptFile)
		}
		off += hdr + int64(h.CompressedPageSize)
	}
	if values != md.NumValues {
		return fmt.Errorf("pages hold %d values, the chunk %d: %w", values, md.NumValues, ErrCorruptFile)
	}
	return nil
}
