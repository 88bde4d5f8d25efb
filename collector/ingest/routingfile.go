package ingest

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strings"
	"time"

	"github.com/golang/snappy"
	"github.com/hamba/avro/v2"
	"github.com/klauspost/compress/zstd"

	"github.com/pilake/pilake/agent/wire"
)

// RoutingRecord is one device message in an IoT Hub routing file.
type RoutingRecord struct {
	// Index is the record's position in its file, from 0.
	Index int
	// Body is the message as the device sent it (a pilake batch).
	Body []byte
	// DeviceID is SystemProperties.connectionDeviceId: the device IoT Hub authenticated.
	DeviceID string
	// EnqueuedTime is when IoT Hub received the message (zero if absent or unparseable).
	EnqueuedTime time.Time
	// SystemProperties are the record's IoT Hub system properties
	// (connectionDeviceId, connectionDeviceGenerationId, enqueuedTime, …).
	SystemProperties map[string]string
	// Err, if set, says why this record cannot be used (its envelope is broken);
	// the other fields may be partial.
	Err error
}

// ErrRoutingFile wraps errors about a routing file as a whole (bad Avro
// container, unknown codec): the file is quarantined.
var ErrRoutingFile = errors.New("unreadable routing file")

// routingMessage is IoT Hub's routing record; the Avro schema is
//
//	{"type":"record","name":"Message","namespace":"Microsoft.Azure.Devices","fields":[
//	 {"name":"EnqueuedTimeUtc","type":"string"},
//	 {"name":"Properties","type":{"type":"map","values":"string"}},
//	 {"name":"SystemProperties","type":{"type":"map","values":"string"}},
//	 {"name":"Body","type":["null","bytes"]}]}
//
// and the JSON encoding writes the same fields, one object per line.
type routingMessage struct {
	EnqueuedTimeUtc  string            `avro:"EnqueuedTimeUtc" json:"EnqueuedTimeUtc"`
	Properties       map[string]string `avro:"Properties" json:"Properties"`
	SystemProperties map[string]string `avro:"SystemProperties" json:"SystemProperties"`
	Body             []byte            `avro:"Body" json:"-"`
}

// RoutingSchema is the Avro schema of IoT Hub message-routing files.
const RoutingSchema = `{"type":"record","name":"Message","namespace":"Microsoft.Azure.Devices","fields":[` +
	`{"name":"EnqueuedTimeUtc","type":"string"},` +
	`{"name":"Properties","type":{"type":"map","values":"string"}},` +
	`{"name":"SystemProperties","type":{"type":"map","values":"string"}},` +
	`{"name":"Body","type":["null","bytes"]}]}`

// Limits for untrusted routing files.
const (
	maxRecordBytes = wire.MaxEncodedSize + 64*1024 // a body plus its envelope
	maxMetaEntries = 64
)

var avroAPI = avro.Config{
	MaxByteSliceSize:  maxRecordBytes,
	MaxSliceAllocSize: 1 << 16,
}.Freeze()

var avroMagic = []byte{'O', 'b', 'j', 1}

// ParseRoutingFile reads an IoT Hub routing file (Avro object container, or
// JSON lines) and calls fn for each record in order; a record whose envelope
// is broken comes with Err set. It returns an error wrapping ErrRoutingFile
// if the file as a whole cannot be read (records before the damage have been
// passed to fn), or fn's error.
func ParseRoutingFile(data []byte, fn func(RoutingRecord) error) error {
	return ParseRoutingFileLimits(data, RoutingLimits{}, fn)
}

// ParseRoutingFileLimits is ParseRoutingFile within lim (zero fields: the
// defaults). An Avro writer schema is validated (no recursion, bounded
// depth and size) before anything is decoded with it, and every block is
// walked within the limits before hamba/avro decodes it.
func ParseRoutingFileLimits(data []byte, lim RoutingLimits, fn func(RoutingRecord) error) error {
	lim = lim.withDefaults()
	if int64(len(data)) > lim.MaxFileBytes {
		return fmt.Errorf("%w: %w: %d bytes (max %d)", ErrRoutingFile, ErrRoutingLimit, len(data), lim.MaxFileBytes)
	}
	if bytes.HasPrefix(data, avroMagic) {
		return parseAvro(data, lim, fn)
	}
	return parseJSONLines(data, fn)
}

// avroReader is a bounds-checked cursor over an Avro object container file.
type avroReader struct {
	b   []byte
	off int
}

func (r *avroReader) long() (int64, error) {
	v, n := binary.Varint(r.b[r.off:])
	if n <= 0 {
		return 0, fmt.Errorf("%w: bad varint at byte %d", ErrRoutingFile, r.off)
	}
	r.off += n
	return v, nil
}

func (r *avroReader) bytes(n int64) ([]byte, error) {
	if n < 0 || n > int64(len(r.b)-r.off) {
		return nil, fmt.Errorf("%w: length %d at byte %d runs past the end", ErrRoutingFile, n, r.off)
	}
	out := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return out, nil
}

// parseAvro walks the container framing itself (so every length is checked
// against the file before anything is allocated) and uses hamba/avro to
// parse the schema and decode the records.
func parseAvro(data []byte, lim RoutingLimits, fn func(RoutingRecord) error) error {
	r := &avroReader{b: data, off: len(avroMagic)}
	meta := map[string][]byte{}
	for {
		n, err := r.long()
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		if n < 0 {
			n = -n
			if _, err := r.long(); err != nil { // block size in bytes, unused
				return err
			}
		}
		if n > maxMetaEntries || len(meta)+int(n) > maxMetaEntries {
			return fmt.Errorf("%w: more than %d metadata entries", ErrRoutingFile, maxMetaEntries)
		}
		for range n {
			kl, err := r.long()
			if err != nil {
				return err
			}
			k, err := r.bytes(kl)
			if err != nil {
				return err
			}
			vl, err := r.long()
			if err != nil {
				return err
			}
			v, err := r.bytes(vl)
			if err != nil {
				return err
			}
			meta[string(k)] = v
		}
	}
	sync, err := r.bytes(16)
	if err != nil {
		return err
	}
	if err := checkSchemaJSON(meta["avro.schema"]); err != nil {
		return fmt.Errorf("%w: schema: %v", ErrRoutingFile, err)
	}
	schema, err := parseSchema(meta["avro.schema"])
	if err != nil {
		return fmt.Errorf("%w: schema: %v", ErrRoutingFile, err)
	}
	if err := validateSchema(schema); err != nil {
		return fmt.Errorf("%w: schema: %v", ErrRoutingFile, err)
	}
	if schema.Type() != avro.Record {
		return fmt.Errorf("%w: schema is a %s, want IoT Hub's Message record", ErrRoutingFile, schema.Type())
	}
	codec := string(meta["avro.codec"])
	var zdec *zstd.Decoder
	index := 0
	var inflated int64
	for r.off < len(r.b) {
		count, err := r.long()
		if err != nil {
			return err
		}
		size, err := r.long()
		if err != nil {
			return err
		}
		raw, err := r.bytes(size)
		if err != nil {
			return err
		}
		s, err := r.bytes(16)
		if err != nil {
			return err
		}
		if !bytes.Equal(s, sync) {
			return fmt.Errorf("%w: bad sync marker after block at byte %d", ErrRoutingFile, r.off-16)
		}
		if count < 0 || count > int64(len(raw))+1 {
			return fmt.Errorf("%w: block claims %d records in %d bytes", ErrRoutingFile, count, len(raw))
		}
		block, err := decompress(codec, raw, &zdec, lim.MaxBlockBytes)
		if err != nil {
			return err
		}
		if inflated += int64(len(block)); inflated > lim.MaxFileDecompressedBytes {
			return fmt.Errorf("%w: %w: blocks decompress past %d bytes", ErrRoutingFile, ErrRoutingLimit, lim.MaxFileDecompressedBytes)
		}
		// Walk the block's records first: lengths, unions and map sizes
		// checked without allocating.
		scan := &avroReader{b: block}
		for i := range count {
			if err := scanDatum(scan, schema, lim.MaxMapEntries); err != nil {
				return fmt.Errorf("record %d: %w", index+int(i), err)
			}
		}
		dec := avroAPI.NewDecoder(schema, bytes.NewReader(block))
		for range count {
			var m routingMessage
			if err := safeDecode(dec, &m); err != nil {
				// Framing is intact but the datum is not: nothing after it
				// in this block can be trusted.
				return fmt.Errorf("%w: record %d: %v", ErrRoutingFile, index, err)
			}
			if err := fn(toRecord(index, m, m.Body, m.Body == nil)); err != nil {
				return err
			}
			index++
		}
	}
	return nil
}

// parseSchema parses a file's writer schema in a cache of its own, so one
// file's named types never leak into another's.
func parseSchema(js []byte) (s avro.Schema, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("avro schema parser panic: %v", p)
		}
	}()
	return avro.ParseBytesWithCache(js, "", &avro.SchemaCache{})
}

func safeDecode(dec *avro.Decoder, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("avro decoder panic: %v", p)
		}
	}()
	return dec.Decode(v)
}

func decompress(codec string, raw []byte, zdec **zstd.Decoder, maxBlockBytes int) ([]byte, error) {
	switch codec {
	case "", "null":
		return raw, nil
	case "deflate":
		// Two passes: measure (into nothing, stopping at the limit), then
		// inflate into a buffer of exactly that size. A bomb costs no
		// memory, and a block no more than its size (a growing buffer
		// allocated about twice).
		n, err := io.Copy(io.Discard, io.LimitReader(flate.NewReader(bytes.NewReader(raw)), int64(maxBlockBytes)+1))
		if err != nil {
			return nil, fmt.Errorf("%w: deflate block: %v", ErrRoutingFile, err)
		}
		if n > int64(maxBlockBytes) {
			return nil, fmt.Errorf("%w: %w: block inflates past %d bytes", ErrRoutingFile, ErrRoutingLimit, maxBlockBytes)
		}
		out := make([]byte, n)
		if _, err := io.ReadFull(flate.NewReader(bytes.NewReader(raw)), out); err != nil {
			return nil, fmt.Errorf("%w: deflate block: %v", ErrRoutingFile, err)
		}
		return out, nil
	case "snappy":
		if len(raw) < 4 {
			return nil, fmt.Errorf("%w: snappy block too short", ErrRoutingFile)
		}
		body, sum := raw[:len(raw)-4], binary.BigEndian.Uint32(raw[len(raw)-4:])
		n, err := snappy.DecodedLen(body)
		if err != nil {
			return nil, fmt.Errorf("%w: snappy block: bad length", ErrRoutingFile)
		}
		if n > maxBlockBytes {
			return nil, fmt.Errorf("%w: %w: snappy block of %d bytes (max %d)", ErrRoutingFile, ErrRoutingLimit, n, maxBlockBytes)
		}
		out, err := snappy.Decode(nil, body)
		if err != nil {
			return nil, fmt.Errorf("%w: snappy block: %v", ErrRoutingFile, err)
		}
		if crc32.ChecksumIEEE(out) != sum {
			return nil, fmt.Errorf("%w: snappy block: checksum mismatch", ErrRoutingFile)
		}
		return out, nil
	case "zstandard":
		if *zdec == nil {
			d, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(maxBlockBytes)), zstd.WithDecoderConcurrency(1))
			if err != nil {
				return nil, fmt.Errorf("%w: zstd: %v", ErrRoutingFile, err)
			}
			*zdec = d
		}
		out, err := (*zdec).DecodeAll(raw, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: zstd block: %v", ErrRoutingFile, err)
		}
		if len(out) > maxBlockBytes {
			return nil, fmt.Errorf("%w: %w: block inflates past %d bytes", ErrRoutingFile, ErrRoutingLimit, maxBlockBytes)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown codec %q", ErrRoutingFile, codec)
}

// jsonMessage is a JSON-encoded routing record; Body is base64 text, or the
// message itself when the device set contentType application/json and
// contentEncoding utf-8.
type jsonMessage struct {
	routingMessage
	Body json.RawMessage `json:"Body"`
}

func parseJSONLines(data []byte, fn func(RoutingRecord) error) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 2*maxRecordBytes)
	index := 0
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var m jsonMessage
		var rec RoutingRecord
		if err := json.Unmarshal(line, &m); err != nil {
			rec = RoutingRecord{Index: index, Body: append([]byte(nil), line...), Err: fmt.Errorf("JSON record: %v", err)}
		} else {
			body, err := jsonBody(m)
			rec = toRecord(index, m.routingMessage, body, m.Body == nil || string(m.Body) == "null")
			if err != nil && rec.Err == nil {
				rec.Body, rec.Err = append([]byte(nil), line...), err
			}
		}
		if err := fn(rec); err != nil {
			return err
		}
		index++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrRoutingFile, err)
	}
	if index == 0 && len(bytes.TrimSpace(data)) > 0 {
		return fmt.Errorf("%w: neither Avro nor JSON lines", ErrRoutingFile)
	}
	return nil
}

func jsonBody(m jsonMessage) ([]byte, error) {
	raw := bytes.TrimSpace(m.Body)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, fmt.Errorf("JSON Body string: %v", err)
		}
		ct := strings.ToLower(m.SystemProperties["contentType"])
		if strings.HasPrefix(ct, "application/json") && strings.EqualFold(m.SystemProperties["contentEncoding"], "utf-8") {
			// A JSON string message, kept as the JSON text it was.
			return []byte(raw), nil
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("JSON Body is not base64: %v", err)
		}
		return b, nil
	}
	// Plain JSON body (contentType application/json, contentEncoding utf-8).
	return []byte(raw), nil
}

func toRecord(index int, m routingMessage, body []byte, missing bool) RoutingRecord {
	rec := RoutingRecord{Index: index, Body: body, DeviceID: m.SystemProperties["connectionDeviceId"], SystemProperties: m.SystemProperties}
	if t, err := time.Parse(time.RFC3339Nano, m.EnqueuedTimeUtc); err == nil {
		rec.EnqueuedTime = t
	} else if t, err := time.Parse("2006-01-02T15:04:05.9999999Z", m.EnqueuedTimeUtc); err == nil {
		rec.EnqueuedTime = t
	}
	switch {
	case missing:
		rec.Err = errors.New("record has no Body")
	case rec.DeviceID == "":
		rec.Err = errors.New("record has no SystemProperties.connectionDeviceId")
	}
	return rec
}
