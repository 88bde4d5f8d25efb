package landing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"time"

	"github.com/pilake/pilake/collector/schema"
)

// A segment is one landing object holding many received batches:
//
//	"PLSEG" 0x01 { record }
//	record: uvarint(len(body)) body crc32c(body) (uint32, little-endian)
//	body:   varint(received_at, µs since the Unix epoch)
//	        uvarint(len(source)) source
//	        payload (the batch exactly as received: binary v1 or JSON)
//
// The payload carries its device, boot and sequence number and its own CRC;
// the record's CRC covers the receive time and source too.
const (
	SegmentMagic   = "PLSEG"
	SegmentVersion = 1
	// SegmentDir is the prefix of segment names.
	SegmentDir = schema.Landing + "-seg/"
)

// Limits of the decoder (segments are read back from storage that anyone
// with write access to the lake could have altered).
const (
	// MaxSegmentRecord bounds one record's body.
	MaxSegmentRecord = 16 << 20
	// maxSource bounds a record's source ("mqtt", "iothub").
	maxSource = 255
)

// ErrSegmentCorrupt wraps every decoding error of a segment.
var ErrSegmentCorrupt = errors.New("corrupt landing segment")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SegmentRecord is one batch in a segment.
type SegmentRecord struct {
	ReceivedAt time.Time // kept to the microsecond
	Source     string    // "mqtt", "iothub"
	Payload    []byte    // the batch as received
}

// AppendSegmentHeader appends the segment header to dst.
func AppendSegmentHeader(dst []byte) []byte {
	return append(append(dst, SegmentMagic...), SegmentVersion)
}

// AppendSegmentRecord appends one record to dst (after a header and any
// earlier records).
func AppendSegmentRecord(dst []byte, r SegmentRecord) []byte {
	var hdr [binary.MaxVarintLen64 * 2]byte
	h := binary.AppendVarint(hdr[:0], r.ReceivedAt.UnixMicro())
	h = binary.AppendUvarint(h, uint64(len(r.Source)))
	n := len(h) + len(r.Source) + len(r.Payload)
	dst = binary.AppendUvarint(dst, uint64(n))
	start := len(dst)
	dst = append(dst, h...)
	dst = append(dst, r.Source...)
	dst = append(dst, r.Payload...)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// EncodeSegment returns a segment holding recs.
func EncodeSegment(recs []SegmentRecord) []byte {
	size := len(SegmentMagic) + 1
	for _, r := range recs {
		size += len(r.Source) + len(r.Payload) + 2*binary.MaxVarintLen64 + 4
	}
	dst := AppendSegmentHeader(make([]byte, 0, size))
	for _, r := range recs {
		dst = AppendSegmentRecord(dst, r)
	}
	return dst
}

// SegmentError says where a segment stopped being readable.
type SegmentError struct {
	Offset int // byte offset of the record (or header) that failed
	Record int // index of that record
	Reason string
}

func (e *SegmentError) Error() string {
	return fmt.Sprintf("%v: record %d at offset %d: %s", ErrSegmentCorrupt, e.Record, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrSegmentCorrupt) hold.
func (e *SegmentError) Unwrap() error { return ErrSegmentCorrupt }

// DecodeSegment returns the records of a segment. Payloads alias data. On
// an error (a *SegmentError) it also returns the records before the one
// that failed: a damaged or truncated segment loses only its tail.
func DecodeSegment(data []byte) ([]SegmentRecord, error) {
	if len(data) < len(SegmentMagic)+1 || string(data[:len(SegmentMagic)]) != SegmentMagic {
		return nil, &SegmentError{Reason: "no PLSEG header"}
	}
	if v := data[len(SegmentMagic)]; v != SegmentVersion {
		return nil, &SegmentError{Reason: fmt.Sprintf("version %d, want %d", v, SegmentVersion)}
	}
	var recs []SegmentRecord
	off := len(SegmentMagic) + 1
	for off < len(data) {
		fail := func(format string, args ...any) ([]SegmentRecord, error) {
			return recs, &SegmentError{Offset: off, Record: len(recs), Reason: fmt.Sprintf(format, args...)}
		}
		n, k := binary.Uvarint(data[off:])
		if k <= 0 || k != uvarintLen(n) {
			return fail("bad record length")
		}
		if n > MaxSegmentRecord {
			return fail("record of %d bytes exceeds %d", n, MaxSegmentRecord)
		}
		if rest := uint64(len(data) - off - k); n+4 > rest {
			return fail("record of %d bytes truncated (%d bytes left)", n, rest)
		}
		body := data[off+k : off+k+int(n)]
		sum := binary.LittleEndian.Uint32(data[off+k+int(n):])
		if crc32.Checksum(body, castagnoli) != sum {
			return fail("checksum mismatch")
		}
		us, j := binary.Varint(body)
		if j <= 0 || j != len(binary.AppendVarint(nil, us)) {
			return fail("bad receive time")
		}
		if us < -1<<62 || us > 1<<62 {
			return fail("receive time %d µs out of range", us)
		}
		body = body[j:]
		sl, j := binary.Uvarint(body)
		if j <= 0 || j != uvarintLen(sl) || sl > maxSource || sl > uint64(len(body)-j) {
			return fail("bad source length")
		}
		src := string(body[j : j+int(sl)])
		recs = append(recs, SegmentRecord{ReceivedAt: time.UnixMicro(us).UTC(), Source: src, Payload: body[j+int(sl):]})
		off += k + int(n) + 4
	}
	return recs, nil
}

// uvarintLen is the length of v's canonical (shortest) encoding; the
// decoder accepts only that, so a segment has one encoding.
func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// SegmentName returns the name of an instance's segment number counter,
// written at t: landing/-seg/{yyyy-mm-dd}/{hh}/{instance}-{counter:016x}.seg
// (UTC), so lifecycle rules can act on raw data by date.
func SegmentName(t time.Time, instance string, counter uint64) string {
	t = t.UTC()
	return fmt.Sprintf("%s%04d-%02d-%02d/%02d/%s-%016x.seg", SegmentDir, t.Year(), t.Month(), t.Day(), t.Hour(), instance, counter)
}

// SegmentHourPrefix is the name prefix of the segments written in t's hour
// (UTC): what a scan for recent segments lists.
func SegmentHourPrefix(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%s%04d-%02d-%02d/%02d/", SegmentDir, t.Year(), t.Month(), t.Day(), t.Hour())
}

// ParseSegmentName returns the instance and counter of a segment name, or
// ok false if name is not a canonical one (as SegmentName writes it).
func ParseSegmentName(name string) (instance string, counter uint64, ok bool) {
	instance, counter, _, ok = parseSegmentName(name)
	return instance, counter, ok
}

// SegmentHour returns the UTC hour a segment name is filed under (that of
// its write time), or ok false if name is not a canonical segment name.
func SegmentHour(name string) (hour time.Time, ok bool) {
	_, _, hour, ok = parseSegmentName(name)
	return hour, ok
}

func parseSegmentName(name string) (instance string, counter uint64, hour time.Time, ok bool) {
	rest, found := strings.CutPrefix(name, SegmentDir)
	if !found {
		return "", 0, time.Time{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || len(parts[0]) != 10 || len(parts[1]) != 2 {
		return "", 0, time.Time{}, false
	}
	day, err := time.Parse("2006-01-02", parts[0])
	if err != nil || day.Format("2006-01-02") != parts[0] {
		return "", 0, time.Time{}, false
	}
	h, err := strconv.Atoi(parts[1])
	if err != nil || h < 0 || h > 23 || fmt.Sprintf("%02d", h) != parts[1] {
		return "", 0, time.Time{}, false
	}
	base, found := strings.CutSuffix(parts[2], ".seg")
	if !found || len(base) != 16+1+16 || base[16] != '-' || !ValidInstance(base[:16]) {
		return "", 0, time.Time{}, false
	}
	counter, err = strconv.ParseUint(base[17:], 16, 64)
	if err != nil || fmt.Sprintf("%016x", counter) != base[17:] {
		return "", 0, time.Time{}, false
	}
	return base[:16], counter, day.Add(time.Duration(h) * time.Hour), true
}

// ValidInstance reports whether s is a Lander instance id: 16 lower-case hex digits.
func ValidInstance(s string) bool {
	if len(s) != 16 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
