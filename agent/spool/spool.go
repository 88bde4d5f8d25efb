package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pilake/pilake/internal/clock"
)

// FsyncPolicy says when appended records are forced to stable storage.
type FsyncPolicy uint8

// Fsync policies; see the package documentation for what each can lose.
const (
	FsyncInterval FsyncPolicy = iota
	FsyncAlways
	FsyncNever
)

// String returns the policy's name as used in configuration.
func (p FsyncPolicy) String() string {
	switch p {
	case FsyncAlways:
		return "always"
	case FsyncNever:
		return "never"
	default:
		return "interval"
	}
}

// ParseFsyncPolicy parses "always", "interval" or "never".
func ParseFsyncPolicy(s string) (FsyncPolicy, error) {
	switch s {
	case "always":
		return FsyncAlways, nil
	case "interval", "":
		return FsyncInterval, nil
	case "never":
		return FsyncNever, nil
	}
	return 0, fmt.Errorf("unknown fsync policy %q: want always, interval or never", s)
}

// Defaults for Options' zero values.
const (
	DefaultMaxBytes           = 256 << 20
	DefaultFsyncInterval      = 5 * time.Second
	DefaultCheckpointInterval = 30 * time.Second
)

// Options configure a Spool. Zero values get the defaults.
type Options struct {
	// Dir is the spool directory; it is created if missing. Required.
	Dir string
	// MaxBytes caps the bytes of all segment files (default 256 MiB).
	MaxBytes int64
	// SegmentBytes is the size at which a segment is closed and a new one
	// started (default MaxBytes/64, at least 64 KiB, at most 4 MiB). Dropping
	// happens in whole segments.
	SegmentBytes int64
	// Fsync is the fsync policy (default FsyncInterval).
	Fsync FsyncPolicy
	// FsyncInterval is the interval of FsyncInterval (default 5 s).
	FsyncInterval time.Duration
	// CheckpointInterval is how often the acknowledged position is saved (default 30 s).
	CheckpointInterval time.Duration
	// Logger receives warnings about corrupt records (default slog.Default()).
	Logger *slog.Logger
	// Clock tells the time: when to sync and save the acknowledged
	// position [clock.Real].
	Clock clock.Clock
}

// Errors returned by the spool.
var (
	// ErrClosed is returned by calls on a closed spool.
	ErrClosed = errors.New("spool closed")
	// ErrTooLarge is returned by Append for a record bigger than the byte cap.
	ErrTooLarge = errors.New("record larger than the spool's byte cap")
	// ErrLocked is returned by Open when another process uses the directory.
	ErrLocked = errors.New("spool directory is in use by another process (two agents with one --spool-dir?)")
)

const (
	headerSize = 36
	version    = 1
	segSuffix  = ".seg"
	cursorName = "acked"
	// MaxPayload is the largest payload Append accepts.
	MaxPayload = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record states
const (
	statePending uint8 = iota
	stateInflight
	stateAcked
)

type recMeta struct {
	off      uint32
	length   uint32
	readings uint32
	state    uint8
}

type segment struct {
	first  uint64 // id of recs[0]
	path   string
	size   int64
	recs   []recMeta
	acked  int
	active bool
}

// Record is one spooled batch handed out by Take*.
type Record struct {
	ID       uint64
	Boot     uint64
	Seq      uint64
	Readings int
	Data     []byte
}

// Stats describe the spool's content and history since Open.
type Stats struct {
	// Bytes is the size of all segment files.
	Bytes int64
	// Records and Readings count unacknowledged records and their readings.
	Records, Readings int64
	// Inflight counts records handed out and not yet acknowledged.
	Inflight int64
	// DroppedRecords and DroppedReadings count unacknowledged data deleted to
	// respect MaxBytes.
	DroppedRecords, DroppedReadings int64
	// CorruptBytes counts bytes found unreadable (torn or bad CRC) at Open.
	CorruptBytes int64
}

// Spool is a disk queue of encoded batches. It is safe for concurrent use.
type Spool struct {
	opts Options
	log  *slog.Logger

	mu         sync.Mutex
	closed     bool
	segs       []*segment
	active     *os.File
	nextID     uint64
	scanFrom   uint64 // no pending record has an id below this
	ackedThru  uint64 // every record with an id below this is acknowledged
	lastSync   time.Time
	lastCkpt   time.Time
	lastWrite  time.Time // last cursor write (synced or not)
	ckptSaved  uint64
	ckptSynced uint64 // the cursor last written with an fsync
	dirty      bool   // appended since last fsync
	readF      *os.File
	readPath   string
	lock       *os.File
	notify     chan struct{}
	st         Stats
	buf        []byte
}

// Open opens (creating if needed) the spool in opts.Dir, scans its segments,
// truncates torn tails and loads the acknowledged position.
func Open(opts Options) (*Spool, error) {
	if opts.Dir == "" {
		return nil, errors.New("spool: no directory given")
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = min(max(opts.MaxBytes/64, 64<<10), 4<<20)
	}
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = DefaultFsyncInterval
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating spool directory: %w", err)
	}
	lock, err := lockDir(opts.Dir)
	if err != nil {
		return nil, err
	}
	s := &Spool{opts: opts, log: opts.Logger, notify: make(chan struct{}, 1), lock: lock}
	now := opts.Clock.Now()
	s.lastSync, s.lastCkpt = now, now
	if err := s.load(); err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, err
	}
	return s, nil
}

func (s *Spool) load() error {
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return fmt.Errorf("listing spool directory: %w", err)
	}
	var firsts []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) || e.IsDir() {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil {
			s.log.Warn("spool: ignoring file with a bad segment name", "file", name)
			continue
		}
		firsts = append(firsts, id)
	}
	slices.Sort(firsts)
	ackedThru, err := readCursor(filepath.Join(s.opts.Dir, cursorName))
	if err != nil {
		s.log.Warn("spool: ignoring unreadable acknowledgement checkpoint; unacknowledged batches may be sent again", "err", err)
		ackedThru = 0
	}
	for _, first := range firsts {
		seg := &segment{first: first, path: filepath.Join(s.opts.Dir, segName(first))}
		if first < s.nextID {
			// Overlaps the previous segment: can only come from tampering.
			s.log.Warn("spool: segment overlaps the previous one; ignoring it", "file", seg.path)
			continue
		}
		if err := s.scanSegment(seg); err != nil {
			return err
		}
		if len(seg.recs) == 0 {
			_ = os.Remove(seg.path)
			continue
		}
		for i := range seg.recs {
			if seg.first+uint64(i) < ackedThru {
				seg.recs[i].state = stateAcked
				seg.acked++
			}
		}
		if seg.acked == len(seg.recs) {
			if err := os.Remove(seg.path); err != nil {
				return fmt.Errorf("removing acknowledged segment: %w", err)
			}
			s.nextID = seg.first + uint64(len(seg.recs))
			continue
		}
		s.segs = append(s.segs, seg)
		s.st.Bytes += seg.size
		for _, r := range seg.recs {
			if r.state != stateAcked {
				s.st.Records++
				s.st.Readings += int64(r.readings)
			}
		}
		s.nextID = seg.first + uint64(len(seg.recs))
	}
	s.nextID = max(s.nextID, ackedThru)
	s.ackedThru = ackedThru
	s.ckptSaved, s.ckptSynced = ackedThru, ackedThru
	if len(s.segs) > 0 {
		s.scanFrom = s.segs[0].first
	} else {
		s.scanFrom = s.nextID
	}
	s.advanceAckedThru()
	return nil
}

// scanSegment reads seg's records, truncating the file after the last good one.
func (s *Spool) scanSegment(seg *segment) error {
	f, err := os.OpenFile(seg.path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("opening spool segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("reading spool segment size: %w", err)
	}
	recs, good, scanErr := scan(f, fi.Size())
	seg.recs = recs
	seg.size = good
	if good < fi.Size() {
		s.st.CorruptBytes += fi.Size() - good
		s.log.Warn("spool: torn or corrupt record; truncating segment after its last good record",
			"file", seg.path, "good_records", len(recs), "lost_bytes", fi.Size()-good, "reason", scanErr)
		if err := f.Truncate(good); err != nil {
			return fmt.Errorf("truncating torn spool segment: %w", err)
		}
	}
	return nil
}

// scan reads the records of one segment of the given size from r, checking
// each CRC. It returns the good records, the length of the good prefix, and
// why scanning stopped early (nil when the whole segment is good).
func scan(r io.ReaderAt, size int64) ([]recMeta, int64, error) {
	var recs []recMeta
	var off int64
	var hdr [headerSize]byte
	var payload []byte
	for off < size {
		if size-off < headerSize {
			return recs, off, fmt.Errorf("torn header at offset %d", off)
		}
		if _, err := r.ReadAt(hdr[:], off); err != nil {
			return recs, off, fmt.Errorf("reading header at offset %d: %w", off, err)
		}
		if hdr[0] != 'P' || hdr[1] != 'S' || hdr[2] != version {
			return recs, off, fmt.Errorf("bad record magic or version at offset %d", off)
		}
		n := binary.LittleEndian.Uint32(hdr[4:])
		if n > MaxPayload || int64(n) > size-off-headerSize {
			return recs, off, fmt.Errorf("record at offset %d: payload length %d past the end", off, n)
		}
		payload = slices.Grow(payload[:0], int(n))[:n]
		if _, err := r.ReadAt(payload, off+headerSize); err != nil {
			return recs, off, fmt.Errorf("reading payload at offset %d: %w", off, err)
		}
		if crcOf(hdr[:], payload) != binary.LittleEndian.Uint32(hdr[28:]) {
			return recs, off, fmt.Errorf("record at offset %d: CRC mismatch", off)
		}
		if off > int64(^uint32(0)) {
			return recs, off, fmt.Errorf("segment longer than 4 GiB")
		}
		recs = append(recs, recMeta{off: uint32(off), length: n, readings: binary.LittleEndian.Uint32(hdr[8:])})
		off += headerSize + int64(n)
	}
	return recs, off, nil
}

func crcOf(hdr, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, hdr[2:28])
	return crc32.Update(c, castagnoli, payload)
}

func segName(first uint64) string { return fmt.Sprintf("%020d%s", first, segSuffix) }

// Append writes one record (an encoded batch of readings readings, with its
// boot id and sequence number) in a single write, then fsyncs per policy.
// It returns the record's id.
func (s *Spool) Append(boot, seq uint64, readings int, payload []byte) (uint64, error) {
	if len(payload) > MaxPayload || int64(len(payload)+headerSize) > s.opts.MaxBytes {
		return 0, fmt.Errorf("appending %d bytes: %w", len(payload), ErrTooLarge)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	recLen := int64(headerSize + len(payload))
	seg := s.activeSeg()
	if seg == nil || seg.size+recLen > s.opts.SegmentBytes && len(seg.recs) > 0 {
		if err := s.roll(); err != nil {
			return 0, err
		}
		seg = s.activeSeg()
	}
	s.buf = slices.Grow(s.buf[:0], int(recLen))[:recLen]
	h := s.buf[:headerSize]
	h[0], h[1], h[2], h[3] = 'P', 'S', version, 0
	binary.LittleEndian.PutUint32(h[4:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[8:], uint32(readings))
	binary.LittleEndian.PutUint64(h[12:], boot)
	binary.LittleEndian.PutUint64(h[20:], seq)
	binary.LittleEndian.PutUint32(h[32:], 0)
	copy(s.buf[headerSize:], payload)
	binary.LittleEndian.PutUint32(h[28:], crcOf(h, payload))
	if _, err := s.active.Write(s.buf); err != nil {
		// Leave no partial record behind for the next append to follow.
		_ = s.active.Truncate(seg.size)
		_, _ = s.active.Seek(seg.size, io.SeekStart)
		return 0, fmt.Errorf("appending to spool segment: %w", err)
	}
	id := seg.first + uint64(len(seg.recs))
	seg.recs = append(seg.recs, recMeta{off: uint32(seg.size), length: uint32(len(payload)), readings: uint32(readings)})
	seg.size += recLen
	s.nextID = id + 1
	s.st.Bytes += recLen
	s.st.Records++
	s.st.Readings += int64(readings)
	s.dirty = true
	now := s.opts.Clock.Now()
	switch s.opts.Fsync {
	case FsyncAlways:
		if err := s.sync(now); err != nil {
			return id, err
		}
	case FsyncInterval:
		if now.Sub(s.lastSync) >= s.opts.FsyncInterval {
			if err := s.sync(now); err != nil {
				return id, err
			}
		}
	}
	s.enforceCap()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return id, nil
}

func (s *Spool) sync(now time.Time) error {
	s.lastSync = now
	if !s.dirty || s.active == nil {
		return nil
	}
	s.dirty = false
	if err := s.active.Sync(); err != nil {
		return fmt.Errorf("syncing spool segment: %w", err)
	}
	return nil
}

func (s *Spool) activeSeg() *segment {
	if len(s.segs) == 0 || !s.segs[len(s.segs)-1].active {
		return nil
	}
	return s.segs[len(s.segs)-1]
}

// roll closes the active segment and starts a new one at nextID.
func (s *Spool) roll() error {
	if s.active != nil {
		if s.dirty && s.opts.Fsync != FsyncNever {
			_ = s.active.Sync()
			s.dirty = false
		}
		_ = s.active.Close()
		s.active = nil
		if old := s.activeSeg(); old != nil {
			old.active = false
			if old.acked == len(old.recs) {
				s.removeSeg(len(s.segs) - 1)
			}
		}
	}
	seg := &segment{first: s.nextID, path: filepath.Join(s.opts.Dir, segName(s.nextID)), active: true}
	f, err := os.OpenFile(seg.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("creating spool segment: %w", err)
	}
	if s.opts.Fsync == FsyncAlways {
		syncDir(s.opts.Dir)
	}
	s.active = f
	s.segs = append(s.segs, seg)
	return nil
}

// enforceCap deletes oldest segments while the spool is over MaxBytes.
func (s *Spool) enforceCap() {
	for s.st.Bytes > s.opts.MaxBytes && len(s.segs) > 1 {
		seg := s.segs[0]
		var recs, readings int64
		for _, r := range seg.recs {
			if r.state != stateAcked {
				recs++
				readings += int64(r.readings)
			}
		}
		s.st.DroppedRecords += recs
		s.st.DroppedReadings += readings
		s.log.Warn("spool: over its byte cap; dropping the oldest unacknowledged batches",
			"file", seg.path, "records", recs, "readings", readings, "max_bytes", s.opts.MaxBytes)
		s.removeSeg(0)
	}
	s.advanceAckedThru()
}

// removeSeg deletes segment i and forgets its records.
func (s *Spool) removeSeg(i int) {
	seg := s.segs[i]
	for _, r := range seg.recs {
		if r.state != stateAcked {
			s.st.Records--
			s.st.Readings -= int64(r.readings)
			if r.state == stateInflight {
				s.st.Inflight--
			}
		}
	}
	s.st.Bytes -= seg.size
	if s.readPath == seg.path && s.readF != nil {
		_ = s.readF.Close()
		s.readF, s.readPath = nil, ""
	}
	if err := os.Remove(seg.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.log.Warn("spool: removing segment", "file", seg.path, "err", err)
	}
	s.segs = slices.Delete(s.segs, i, i+1)
	if i == 0 {
		end := seg.first + uint64(len(seg.recs))
		s.scanFrom = max(s.scanFrom, end)
		s.ackedThru = max(s.ackedThru, end)
	}
}

// Notify returns a channel that receives a value after an Append.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

// TakeNewest hands out the most recently appended record if it is pending
// (neither in flight nor acknowledged): the live batch. ok is false otherwise.
func (s *Spool) TakeNewest() (Record, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.segs) == 0 {
		return Record{}, false, nil
	}
	seg := s.segs[len(s.segs)-1]
	if len(seg.recs) == 0 || seg.recs[len(seg.recs)-1].state != statePending {
		return Record{}, false, nil
	}
	return s.take(seg, len(seg.recs)-1)
}

// TakeOldest hands out the oldest pending record: the backlog, oldest first.
func (s *Spool) TakeOldest() (Record, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Record{}, false, nil
	}
	i := sort.Search(len(s.segs), func(i int) bool {
		sg := s.segs[i]
		return sg.first+uint64(len(sg.recs)) > s.scanFrom
	})
	for ; i < len(s.segs); i++ {
		seg := s.segs[i]
		j := 0
		if s.scanFrom > seg.first {
			j = int(s.scanFrom - seg.first)
		}
		for ; j < len(seg.recs); j++ {
			if seg.recs[j].state == statePending {
				s.scanFrom = seg.first + uint64(j)
				return s.take(seg, j)
			}
		}
	}
	s.scanFrom = s.nextID
	return Record{}, false, nil
}

func (s *Spool) take(seg *segment, j int) (Record, bool, error) {
	m := &seg.recs[j]
	if s.readPath != seg.path {
		if s.readF != nil {
			_ = s.readF.Close()
		}
		f, err := os.Open(seg.path)
		if err != nil {
			s.readF, s.readPath = nil, ""
			return Record{}, false, fmt.Errorf("opening spool segment for reading: %w", err)
		}
		s.readF, s.readPath = f, seg.path
	}
	buf := make([]byte, headerSize+int(m.length))
	if _, err := s.readF.ReadAt(buf, int64(m.off)); err != nil {
		return Record{}, false, fmt.Errorf("reading spooled record: %w", err)
	}
	if crcOf(buf[:headerSize], buf[headerSize:]) != binary.LittleEndian.Uint32(buf[28:]) {
		// The file changed under us (disk error). Treat as dropped.
		s.log.Warn("spool: record failed its CRC when read back; dropping it", "file", seg.path, "offset", m.off)
		s.markAcked(seg, j)
		s.st.DroppedRecords++
		s.st.DroppedReadings += int64(m.readings)
		return Record{}, false, nil
	}
	m.state = stateInflight
	s.st.Inflight++
	return Record{
		ID:       seg.first + uint64(j),
		Readings: int(m.readings),
		Boot:     binary.LittleEndian.Uint64(buf[12:]),
		Seq:      binary.LittleEndian.Uint64(buf[20:]),
		Data:     buf[headerSize:],
	}, true, nil
}

func (s *Spool) find(id uint64) (*segment, int) {
	i := sort.Search(len(s.segs), func(i int) bool {
		sg := s.segs[i]
		return sg.first+uint64(len(sg.recs)) > id
	})
	if i == len(s.segs) || id < s.segs[i].first {
		return nil, 0
	}
	return s.segs[i], int(id - s.segs[i].first)
}

// Ack marks record id as delivered and reports whether this call did (false
// for an unknown or already acknowledged id, e.g. one dropped for the byte
// cap or acknowledged by an earlier publication of the same batch).
func (s *Spool) Ack(id uint64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	seg, j := s.find(id)
	if seg == nil || seg.recs[j].state == stateAcked {
		return false, nil
	}
	s.markAcked(seg, j)
	if seg.acked == len(seg.recs) && !seg.active {
		s.removeSeg(slices.Index(s.segs, seg))
	}
	s.advanceAckedThru()
	now := s.opts.Clock.Now()
	if now.Sub(s.lastCkpt) >= s.opts.CheckpointInterval {
		s.lastCkpt, s.lastWrite = now, now
		return true, s.checkpoint()
	}
	if now.Sub(s.lastWrite) >= cursorWriteInterval {
		// Written, not synced: a process killed (kill -9, a crash) keeps it
		// (the kernel has it), so a restart resends, and counts as
		// acknowledged again, at most ~1 s of batches; a power cut falls
		// back to the last synced checkpoint.
		s.lastWrite = now
		return true, s.writeCursor(false)
	}
	return true, nil
}

func (s *Spool) markAcked(seg *segment, j int) {
	m := &seg.recs[j]
	if m.state == stateInflight {
		s.st.Inflight--
	}
	m.state = stateAcked
	seg.acked++
	s.st.Records--
	s.st.Readings -= int64(m.readings)
}

// Release puts an in-flight record back to pending, to be taken again.
func (s *Spool) Release(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seg, j := s.find(id)
	if seg == nil || seg.recs[j].state != stateInflight {
		return
	}
	seg.recs[j].state = statePending
	s.st.Inflight--
	s.scanFrom = min(s.scanFrom, id)
}

// ReleaseAll puts every in-flight record back to pending.
func (s *Spool) ReleaseAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, seg := range s.segs {
		for j := range seg.recs {
			if seg.recs[j].state == stateInflight {
				seg.recs[j].state = statePending
				s.st.Inflight--
				s.scanFrom = min(s.scanFrom, seg.first+uint64(j))
			}
		}
	}
}

func (s *Spool) advanceAckedThru() {
	for _, seg := range s.segs {
		end := seg.first + uint64(len(seg.recs))
		if end <= s.ackedThru {
			continue
		}
		if s.ackedThru < seg.first {
			s.ackedThru = seg.first // ids between segments were acknowledged or dropped
		}
		for j := int(s.ackedThru - seg.first); j < len(seg.recs) && seg.recs[j].state == stateAcked; j++ {
			s.ackedThru++
		}
		if s.ackedThru < end {
			return
		}
	}
	s.ackedThru = max(s.ackedThru, s.nextID)
}

// checkpoint saves ackedThru atomically and durably (per the fsync policy).
func (s *Spool) checkpoint() error { return s.writeCursor(s.opts.Fsync != FsyncNever) }

// cursorWriteInterval is how often an acknowledgement writes the cursor
// without syncing it, between synced checkpoints.
const cursorWriteInterval = time.Second

// writeCursor saves ackedThru atomically (temporary file + rename), with an
// fsync of the file when sync is set.
func (s *Spool) writeCursor(sync bool) error {
	if s.ackedThru == s.ckptSaved && (!sync || s.ackedThru == s.ckptSynced) {
		return nil
	}
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:], s.ackedThru)
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[:8], castagnoli))
	path := filepath.Join(s.opts.Dir, cursorName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b[:], 0o640); err != nil {
		return fmt.Errorf("writing spool checkpoint: %w", err)
	}
	if sync {
		if f, err := os.OpenFile(tmp, os.O_RDWR, 0); err == nil {
			_ = f.Sync()
			_ = f.Close()
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming spool checkpoint: %w", err)
	}
	s.ckptSaved = s.ackedThru
	if sync {
		s.ckptSynced = s.ackedThru
	}
	return nil
}

func readCursor(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading spool checkpoint: %w", err)
	}
	if len(b) != 12 || crc32.Checksum(b[:8], castagnoli) != binary.LittleEndian.Uint32(b[8:]) {
		return 0, errors.New("spool checkpoint: bad length or CRC")
	}
	return binary.LittleEndian.Uint64(b), nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// Stats returns the current counters.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st
}

// Sync forces appended records to stable storage now.
func (s *Spool) Sync() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return s.sync(s.opts.Clock.Now())
}

// Close syncs, saves the acknowledged position and closes the files.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	var errs []error
	if err := s.sync(s.opts.Clock.Now()); err != nil {
		errs = append(errs, err)
	}
	s.closed = true
	if s.active != nil {
		errs = append(errs, s.active.Close())
		s.active = nil
	}
	if s.readF != nil {
		_ = s.readF.Close()
	}
	// Delete a fully acknowledged active segment so a restart finds nothing to send.
	if seg := s.activeSeg(); seg != nil && seg.acked == len(seg.recs) {
		seg.active = false
		s.removeSeg(len(s.segs) - 1)
	}
	s.advanceAckedThru()
	errs = append(errs, s.checkpoint())
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
	}
	return errors.Join(errs...)
}
