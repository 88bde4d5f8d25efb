package delta

import (
	"encoding/json"
	"testing"
)

// TestChecksumOnlyFromExactState: no version checksum from a snapshot that
// actions failed to apply to partway, nor when In-Commit Timestamps are on
// and the commit's timestamp is not known (or off and one is given).
func TestChecksumOnlyFromExactState(t *testing.T) {
	s := newSnapshot()
	md := Metadata{ID: "x", Format: Format{Provider: "parquet"}, SchemaString: `{"type":"struct","fields":[]}`}
	if err := s.apply([]Action{{Protocol: &Protocol{MinReaderVersion: 1, MinWriterVersion: 2}}, {MetaData: &md},
		{Add: &AddFile{Path: "a.parquet", Size: 10}}, {Add: &AddFile{Path: "b.parquet", Size: 5}}, {Add: &AddFile{Path: "a.parquet", Size: 7}}}); err != nil {
		t.Fatal(err)
	}
	s.Version = 0
	c, ok := s.checksum("id", 0)
	if !ok || c.NumFiles != 2 || c.TableSizeBytes != 12 || c.TxnID != "id" || c.Metadata.Configuration == nil || c.Metadata.PartitionColumns == nil {
		t.Fatalf("checksum %+v, %v", c, ok)
	}
	if _, ok := s.checksum("id", 1234); ok {
		t.Error("a checksum with an inCommitTimestamp for a table without In-Commit Timestamps")
	}
	ict := s.clone()
	md.Configuration = map[string]string{"delta.enableInCommitTimestamps": "true"}
	if err := ict.apply([]Action{{Protocol: &Protocol{MinReaderVersion: 1, MinWriterVersion: 7, WriterFeatures: []string{"inCommitTimestamp"}}}, {MetaData: &md}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := ict.checksum("id", 0); ok {
		t.Error("a checksum without the inCommitTimestamp of a table with In-Commit Timestamps")
	}
	if c, ok := ict.checksum("id", 1234); !ok || c.InCommitTimestampOpt == nil || *c.InCommitTimestampOpt != 1234 {
		t.Errorf("In-Commit Timestamps: %+v, %v", c, ok)
	}
	// Actions that fail partway (an add without a path after a remove).
	if err := s.apply([]Action{{Remove: &RemoveFile{Path: "b.parquet"}}, {Add: &AddFile{}}}); err == nil {
		t.Fatal("an add without a path applied")
	}
	if _, ok := s.checksum("id", 0); ok {
		t.Error("a checksum from a partly applied commit")
	}
	if _, ok := s.clone().checksum("id", 0); ok {
		t.Error("a checksum from a clone of a partly applied snapshot")
	}
	// Feature lists as the log has them: present, empty or not, from
	// reader version 3 and writer version 7 on; absent below.
	for _, c := range []struct {
		p    Protocol
		want string
	}{
		{Protocol{MinReaderVersion: 1, MinWriterVersion: 2}, `{"minReaderVersion":1,"minWriterVersion":2}`},
		{Protocol{MinReaderVersion: 3, MinWriterVersion: 7}, `{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":[],"writerFeatures":[]}`},
		{Protocol{MinReaderVersion: 1, MinWriterVersion: 7, WriterFeatures: []string{"appendOnly"}}, `{"minReaderVersion":1,"minWriterVersion":7,"writerFeatures":["appendOnly"]}`},
	} {
		if b, _ := json.Marshal(checksumProtocol(c.p)); string(b) != c.want {
			t.Errorf("protocol %+v in a .crc: %s, want %s", c.p, b, c.want)
		}
	}
}
