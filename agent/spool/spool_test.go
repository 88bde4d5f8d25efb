package spool

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pilake/pilake/internal/clock"
)

func openT(t *testing.T, opts Options) *Spool {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// crash abandons s as kill -9 would: its files and lock are closed, nothing
// is synced or checkpointed.
func crash(s *Spool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.active != nil {
		s.active.Close()
	}
	if s.readF != nil {
		s.readF.Close()
	}
	if s.lock != nil {
		s.lock.Close()
	}
}

func payload(seq int, n int) []byte {
	return bytes.Repeat([]byte{byte(seq)}, n)
}

func appendN(t *testing.T, s *Spool, from, to int, size int) {
	t.Helper()
	for i := from; i <= to; i++ {
		if _, err := s.Append(7, uint64(i), 10*i, payload(i, size)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
}

func takeAll(t *testing.T, s *Spool) []Record {
	t.Helper()
	var out []Record
	for {
		r, ok, err := s.TakeOldest()
		if err != nil {
			t.Fatalf("TakeOldest: %v", err)
		}
		if !ok {
			return out
		}
		out = append(out, r)
	}
}

func seqs(rs []Record) []uint64 {
	var out []uint64
	for _, r := range rs {
		out = append(out, r.Seq)
	}
	return out
}

func TestAppendTakeAckReopen(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, SegmentBytes: 200})
	appendN(t, s, 1, 5, 50)
	recs := takeAll(t, s)
	if got := fmt.Sprint(seqs(recs)); got != "[1 2 3 4 5]" {
		t.Fatalf("taken seqs %s, want [1 2 3 4 5]", got)
	}
	for i, r := range recs {
		if r.Boot != 7 || r.Readings != 10*int(r.Seq) || !bytes.Equal(r.Data, payload(int(r.Seq), 50)) {
			t.Fatalf("record %d = %+v: wrong content", i, r)
		}
	}
	if st := s.Stats(); st.Records != 5 || st.Inflight != 5 || st.Readings != 150 {
		t.Fatalf("stats %+v, want 5 records, 5 in flight, 150 readings", st)
	}
	for _, r := range recs[:3] {
		if _, err := s.Ack(r.ID); err != nil {
			t.Fatal(err)
		}
	}
	if newly, err := s.Ack(recs[0].ID); err != nil || newly { // idempotent
		t.Fatalf("second Ack = %v, %v; want false, nil", newly, err)
	}
	if st := s.Stats(); st.Records != 2 || st.Readings != 90 {
		t.Fatalf("after acks: stats %+v, want 2 records, 90 readings", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openT(t, Options{Dir: dir, SegmentBytes: 200})
	if got := fmt.Sprint(seqs(takeAll(t, s2))); got != "[4 5]" {
		t.Fatalf("after reopen took %s, want [4 5]", got)
	}
}

func TestNewestFirstThenBacklog(t *testing.T) {
	s := openT(t, Options{Dir: t.TempDir()})
	appendN(t, s, 1, 3, 10)
	r, ok, err := s.TakeNewest()
	if err != nil || !ok || r.Seq != 3 {
		t.Fatalf("TakeNewest = %+v %v %v, want seq 3", r, ok, err)
	}
	if _, ok, _ := s.TakeNewest(); ok {
		t.Fatal("TakeNewest handed out the in-flight newest record again")
	}
	if got := fmt.Sprint(seqs(takeAll(t, s))); got != "[1 2]" {
		t.Fatalf("backlog %s, want [1 2]", got)
	}
	s.Release(r.ID)
	if got := fmt.Sprint(seqs(takeAll(t, s))); got != "[3]" {
		t.Fatalf("after Release took %s, want [3]", got)
	}
	s.ReleaseAll()
	if got := fmt.Sprint(seqs(takeAll(t, s))); got != "[1 2 3]" {
		t.Fatalf("after ReleaseAll took %s, want [1 2 3]", got)
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTornTail(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(path string) error
		want    string
		corrupt bool
	}{
		{"cut inside payload", func(p string) error {
			fi, _ := os.Stat(p)
			return os.Truncate(p, fi.Size()-5)
		}, "[1 2]", true},
		{"cut inside header", func(p string) error {
			fi, _ := os.Stat(p)
			return os.Truncate(p, fi.Size()-50-20)
		}, "[1 2]", true},
		{"flipped payload byte", func(p string) error {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			fi, _ := f.Stat()
			_, err = f.WriteAt([]byte{0xff}, fi.Size()-1)
			return err
		}, "[1 2]", true},
		{"garbage appended", func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("PS\x01\x00garbage garbage garbage garbage garbage"))
			return err
		}, "[1 2 3]", true},
		{"intact", func(string) error { return nil }, "[1 2 3]", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, Options{Dir: dir})
			appendN(t, s, 1, 3, 50)
			crash(s) // kill -9: no Close; the files stay as written
			files := segFiles(t, dir)
			if len(files) != 1 {
				t.Fatalf("%d segment files, want 1", len(files))
			}
			if err := tc.damage(files[0]); err != nil {
				t.Fatal(err)
			}
			s2 := openT(t, Options{Dir: dir})
			if got := fmt.Sprint(seqs(takeAll(t, s2))); got != tc.want {
				t.Fatalf("after reopen took %s, want %s", got, tc.want)
			}
			if st := s2.Stats(); (st.CorruptBytes > 0) != tc.corrupt {
				t.Fatalf("CorruptBytes = %d, want corrupt=%v", st.CorruptBytes, tc.corrupt)
			}
			// The spool keeps working: new records go after the survivors.
			appendN(t, s2, 4, 4, 50)
			if got := fmt.Sprint(seqs(takeAll(t, s2))); got != "[4]" {
				t.Fatalf("new append took %s, want [4]", got)
			}
			_ = s2.Close()
			s3 := openT(t, Options{Dir: dir})
			if st := s3.Stats(); st.CorruptBytes != 0 {
				t.Fatalf("second reopen found %d corrupt bytes; the torn tail should have been truncated", st.CorruptBytes)
			}
		})
	}
}

func TestByteCapDropsOldest(t *testing.T) {
	dir := t.TempDir()
	const recSize = headerSize + 100
	s := openT(t, Options{Dir: dir, MaxBytes: 10 * recSize, SegmentBytes: 2 * recSize})
	appendN(t, s, 1, 30, 100)
	st := s.Stats()
	if st.Bytes > 10*recSize {
		t.Fatalf("spool holds %d bytes, cap %d", st.Bytes, 10*recSize)
	}
	if st.DroppedRecords+st.Records != 30 {
		t.Fatalf("dropped %d + kept %d records, want 30", st.DroppedRecords, st.Records)
	}
	kept := takeAll(t, s)
	var keptReadings int64
	for i, r := range kept {
		keptReadings += int64(r.Readings)
		if i > 0 && r.Seq != kept[i-1].Seq+1 {
			t.Fatalf("kept records not contiguous: %v", seqs(kept))
		}
	}
	if kept[len(kept)-1].Seq != 30 {
		t.Fatalf("newest kept seq %d, want 30 (drop oldest)", kept[len(kept)-1].Seq)
	}
	if st.DroppedReadings+keptReadings != 10*(30*31/2) {
		t.Fatalf("dropped %d + kept %d readings, want %d", st.DroppedReadings, keptReadings, 10*(30*31/2))
	}
	// Acknowledged records are not counted as dropped.
	for _, r := range kept {
		if _, err := s.Ack(r.ID); err != nil {
			t.Fatal(err)
		}
	}
	before := s.Stats().DroppedReadings
	appendN(t, s, 31, 38, 100)
	if got := s.Stats().DroppedReadings; got != before {
		t.Fatalf("dropping acknowledged segments counted %d dropped readings", got-before)
	}
	if _, err := s.Append(1, 1, 1, make([]byte, 10*recSize)); err == nil {
		t.Fatal("Append of a record over the cap succeeded")
	}
}

func TestAckedSegmentsAreDeletedAndCheckpointed(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Unix(1000, 0))
	opts := Options{Dir: dir, SegmentBytes: 2 * (headerSize + 10), CheckpointInterval: time.Minute, Clock: clk}
	s := openT(t, opts)
	appendN(t, s, 1, 10, 10)
	for _, r := range takeAll(t, s)[:7] {
		if _, err := s.Ack(r.ID); err != nil {
			t.Fatal(err)
		}
	}
	// Segments hold 2 records: [1 2] [3 4] [5 6] deleted, [7 8] [9 10] remain.
	if n := len(segFiles(t, dir)); n != 2 {
		t.Fatalf("%d segment files after acking 7 of 10, want 2", n)
	}
	// Crash before a checkpoint: record 7 (acked, in a live segment) comes back.
	crash(s)
	crashed := openT(t, opts)
	recs := takeAll(t, crashed)
	if got := fmt.Sprint(seqs(recs)); got != "[7 8 9 10]" {
		t.Fatalf("after crash without checkpoint took %s, want [7 8 9 10]", got)
	}
	// A due checkpoint makes acknowledgements durable: acking 7 and 8 with
	// the checkpoint interval passed saves "everything below seq 9".
	clk.Advance(2 * time.Minute)
	for _, r := range recs[:2] {
		if _, err := crashed.Ack(r.ID); err != nil {
			t.Fatal(err)
		}
	}
	crash(crashed)
	s3 := openT(t, opts)
	if got := fmt.Sprint(seqs(takeAll(t, s3))); got != "[9 10]" {
		t.Fatalf("after checkpoint and crash took %s, want [9 10]", got)
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	openT(t, Options{Dir: dir})
	if _, err := Open(Options{Dir: dir}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open of one directory = %v, want ErrLocked", err)
	}
}

func TestFsyncPolicy(t *testing.T) {
	for _, name := range []string{"always", "interval", "never"} {
		p, err := ParseFsyncPolicy(name)
		if err != nil || p.String() != name {
			t.Fatalf("ParseFsyncPolicy(%q) = %v, %v", name, p, err)
		}
		s := openT(t, Options{Dir: t.TempDir(), Fsync: p})
		appendN(t, s, 1, 3, 10)
		if err := s.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ParseFsyncPolicy("sometimes"); err == nil {
		t.Fatal("ParseFsyncPolicy accepted nonsense")
	}
}

func FuzzScan(f *testing.F) {
	dir := f.TempDir()
	s, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if _, err := s.Append(1, uint64(i), i, payload(i, 20*i)); err != nil {
			f.Fatal(err)
		}
	}
	_ = s.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
		f.Add(b[:len(b)-3])
	}
	if golden, err := os.ReadFile(filepath.Join("testdata", "segment-v1.seg")); err == nil {
		f.Add(golden)
	}
	f.Add([]byte{})
	f.Add([]byte("PS\x01\x00\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, good, _ := scan(bytes.NewReader(data), int64(len(data)))
		if good < 0 || good > int64(len(data)) {
			t.Fatalf("good prefix %d outside 0..%d", good, len(data))
		}
		var end int64
		for _, r := range recs {
			if int64(r.off) != end {
				t.Fatalf("record at %d, want %d", r.off, end)
			}
			end += headerSize + int64(r.length)
		}
		if end != good {
			t.Fatalf("records end at %d, good prefix %d", end, good)
		}
	})
}
