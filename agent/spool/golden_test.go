package spool

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pilake/pilake/internal/clock"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGoldenSegment pins the on-disk record format: three records appended
// to an empty spool must produce testdata/segment-v1.seg byte for byte, and
// that file must scan back to the same records. A spool written by an older
// agent must stay readable, so a change here needs a new version byte.
func TestGoldenSegment(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, Options{Dir: dir, Clock: clock.NewFake(time.Unix(0, 0))})
	for i := 1; i <= 3; i++ {
		if _, err := s.Append(0x0123456789abcdef, uint64(i), 400*i, []byte(fmt.Sprintf("batch %d payload", i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, segName(0)))
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "segment-v1.seg")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update once to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("segment bytes differ from %s:\n got %x\nwant %x", golden, got, want)
	}
	recs, good, err := scan(bytes.NewReader(want), int64(len(want)))
	if err != nil || good != int64(len(want)) || len(recs) != 3 {
		t.Fatalf("scanning the golden segment: %d records, %d good bytes, %v", len(recs), good, err)
	}
	for i, r := range recs {
		if r.readings != uint32(400*(i+1)) || r.length != uint32(len(fmt.Sprintf("batch %d payload", i+1))) {
			t.Fatalf("golden record %d = %+v", i, r)
		}
	}
}
