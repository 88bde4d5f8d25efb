package delta

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"strings"

	"github.com/RoaringBitmap/roaring/v2/roaring64"

	"github.com/pilake/pilake/collector/lake"
)

// dvMagic starts a serialized deletion vector (PROTOCOL.md, Deletion Vector
// Format): a 64-bit RoaringBitmap in the portable format follows.
const dvMagic = 1681511377

// z85 is the ZeroMQ Base85 alphabet (RFC 32/Z85) deletion vectors use.
const z85 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

var z85Decode = func() (t [256]int16) {
	for i := range t {
		t[i] = -1
	}
	for i := 0; i < len(z85); i++ {
		t[z85[i]] = int16(i)
	}
	return
}()

// decodeZ85 decodes Z85 text (a multiple of 5 characters) into 4 bytes per 5.
func decodeZ85(s string) ([]byte, error) {
	if len(s)%5 != 0 {
		return nil, fmt.Errorf("z85: length %d is not a multiple of 5", len(s))
	}
	out := make([]byte, 0, len(s)/5*4)
	for i := 0; i < len(s); i += 5 {
		var v uint64
		for j := range 5 {
			d := z85Decode[s[i+j]]
			if d < 0 {
				return nil, fmt.Errorf("z85: invalid character %q", s[i+j])
			}
			v = v*85 + uint64(d)
		}
		if v > 0xffffffff {
			return nil, fmt.Errorf("z85: group %q overflows", s[i:i+5])
		}
		out = binary.BigEndian.AppendUint32(out, uint32(v))
	}
	return out, nil
}

// dvRelPath is the object name, relative to the table, of a "u" deletion
// vector: <random prefix>/deletion_vector_<uuid>.bin, the UUID being the
// last 20 characters (Z85) of pathOrInlineDv.
func dvRelPath(pathOrInlineDv string) (string, error) {
	if len(pathOrInlineDv) < 20 {
		return "", fmt.Errorf("%w: deletion vector path %q too short", ErrCorruptLog, pathOrInlineDv)
	}
	prefix, enc := pathOrInlineDv[:len(pathOrInlineDv)-20], pathOrInlineDv[len(pathOrInlineDv)-20:]
	b, err := decodeZ85(enc)
	if err != nil {
		return "", fmt.Errorf("%w: deletion vector uuid %q: %v", ErrCorruptLog, enc, err)
	}
	h := hex.EncodeToString(b)
	name := "deletion_vector_" + h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:] + ".bin"
	if prefix != "" {
		name = prefix + "/" + name
	}
	return name, nil
}

// dvNativeMagic starts a deletion vector in the older "native" format of
// Delta's RoaringBitmapArray (a 4-byte bitmap count, then each 32-bit
// bitmap's size and bytes; the key is the bitmap's index). Delta's readers
// read both.
const dvNativeMagic = 1681511376

// decodeDV parses a serialized deletion vector (magic number and a 64-bit
// RoaringBitmap, portable or native) with the RoaringBitmap library.
func decodeDV(b []byte) (*roaring64.Bitmap, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("%w: deletion vector of %d bytes", ErrCorruptFile, len(b))
	}
	switch binary.LittleEndian.Uint32(b) {
	case dvMagic:
	case dvNativeMagic:
		// Rewrite the header into the portable one the library reads:
		// numBuckets (8 bytes), then each bucket's key before its bitmap.
		rest := b[4:]
		if len(rest) < 4 {
			return nil, fmt.Errorf("%w: native deletion vector without a count", ErrCorruptFile)
		}
		n := binary.LittleEndian.Uint32(rest)
		rest = rest[4:]
		if int64(n) > int64(len(rest))/4 {
			return nil, fmt.Errorf("%w: native deletion vector claims %d bitmaps", ErrCorruptFile, n)
		}
		p := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint64(nil, 0), dvMagic)[8:]
		p = binary.LittleEndian.AppendUint64(p, uint64(n))
		for i := range n {
			if len(rest) < 4 {
				return nil, fmt.Errorf("%w: native deletion vector ends early", ErrCorruptFile)
			}
			size := int64(binary.LittleEndian.Uint32(rest))
			if size > int64(len(rest)-4) {
				return nil, fmt.Errorf("%w: native deletion vector bitmap of %d bytes", ErrCorruptFile, size)
			}
			p = binary.LittleEndian.AppendUint32(p, i)
			p = append(p, rest[4:4+size]...)
			rest = rest[4+size:]
		}
		b = p
	default:
		return nil, fmt.Errorf("%w: deletion vector magic number %d", ErrCorruptFile, binary.LittleEndian.Uint32(b))
	}
	// The library allocates what the bucket count claims: check it against
	// the bytes first (a bucket is a 4-byte key and at least 8 bytes of
	// 32-bit bitmap).
	if len(b) < 12 {
		return nil, fmt.Errorf("%w: deletion vector of %d bytes", ErrCorruptFile, len(b))
	}
	if n := binary.LittleEndian.Uint64(b[4:]); n > uint64(len(b)-12)/12 {
		return nil, fmt.Errorf("%w: deletion vector claims %d buckets in %d bytes", ErrCorruptFile, n, len(b))
	}
	bm := roaring64.New()
	if _, err := bm.ReadFrom(bytes.NewReader(b[4:])); err != nil {
		return nil, fmt.Errorf("%w: deletion vector bitmap: %v", ErrCorruptFile, err)
	}
	return bm, nil
}

// loadDV returns the row indexes a deletion vector deletes. The bitmap's
// cardinality must be the descriptor's.
func loadDV(ctx context.Context, l lake.Lake, table string, dv *DeletionVector) (*roaring64.Bitmap, error) {
	var bm *roaring64.Bitmap
	switch dv.StorageType {
	case "i":
		b, err := decodeZ85(dv.PathOrInlineDv)
		if err != nil {
			return nil, fmt.Errorf("%w: inline deletion vector: %v", ErrCorruptLog, err)
		}
		if int(dv.SizeInBytes) > len(b) || dv.SizeInBytes < 0 {
			return nil, fmt.Errorf("%w: inline deletion vector of %d bytes, size %d", ErrCorruptLog, len(b), dv.SizeInBytes)
		}
		if bm, err = decodeDV(b[:dv.SizeInBytes]); err != nil {
			return nil, err
		}
	case "u", "p":
		var name string
		if dv.StorageType == "u" {
			rel, err := dvRelPath(dv.PathOrInlineDv)
			if err != nil {
				return nil, err
			}
			name = table + "/" + rel
		} else {
			// An absolute path can be read only when it names a file below
			// the table; pilake's lakes have no absolute names.
			return nil, fmt.Errorf("deletion vector at absolute path %q: %w", dv.PathOrInlineDv, ErrUnsupported)
		}
		if !strings.HasSuffix(name, ".bin") || lake.CheckName(name) != nil {
			return nil, fmt.Errorf("%w: deletion vector file %q", ErrCorruptLog, name)
		}
		data, err := l.Get(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("reading deletion vector %s: %w", name, err)
		}
		off := int64(0)
		if dv.Offset != nil {
			off = int64(*dv.Offset)
		}
		if len(data) < 1 || data[0] != 1 {
			return nil, fmt.Errorf("%w: deletion vector file %s: version %v", ErrCorruptFile, name, data[:min(1, len(data))])
		}
		if off < 1 || off+4 > int64(len(data)) {
			return nil, fmt.Errorf("%w: deletion vector at %d outside %s (%d bytes)", ErrCorruptFile, off, name, len(data))
		}
		size := int64(binary.BigEndian.Uint32(data[off:]))
		if size != int64(dv.SizeInBytes) || off+4+size+4 > int64(len(data)) {
			return nil, fmt.Errorf("%w: deletion vector at %d of %s: size %d, descriptor %d", ErrCorruptFile, off, name, size, dv.SizeInBytes)
		}
		body := data[off+4 : off+4+size]
		if crc := binary.BigEndian.Uint32(data[off+4+size:]); crc != crc32.ChecksumIEEE(body) {
			return nil, fmt.Errorf("%w: deletion vector at %d of %s: checksum mismatch", ErrCorruptFile, off, name)
		}
		if bm, err = decodeDV(body); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("deletion vector storage type %q: %w", dv.StorageType, ErrUnsupported)
	}
	if got := bm.GetCardinality(); got != uint64(dv.Cardinality) {
		return nil, fmt.Errorf("%w: deletion vector holds %d rows, descriptor says %d", ErrCorruptFile, got, dv.Cardinality)
	}
	return bm, nil
}
