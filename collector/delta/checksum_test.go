package delta_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// replayed is a table's state at one version, found by replaying its JSON
// commits from version 0 here, independently of the package's snapshot
// code: action reconciliation by (path, deletion vector), sizes summed.
type replayed struct {
	numFiles, sizeBytes int64
	metadata, protocol  map[string]any
	txns                map[string]map[string]any
	domains             map[string]map[string]any
	ict                 *int64
	txnID               string
}

func replayTo(t *testing.T, l lake.Lake, table string, v int64) replayed {
	t.Helper()
	type file struct {
		Path           string          `json:"path"`
		Size           int64           `json:"size"`
		DeletionVector json.RawMessage `json:"deletionVector"`
	}
	type line struct {
		Add        *file                      `json:"add"`
		Remove     *file                      `json:"remove"`
		MetaData   map[string]any             `json:"metaData"`
		Protocol   map[string]any             `json:"protocol"`
		Txn        map[string]any             `json:"txn"`
		Domain     map[string]any             `json:"domainMetadata"`
		CommitInfo map[string]json.RawMessage `json:"commitInfo"`
	}
	live := map[string]int64{}
	r := replayed{txns: map[string]map[string]any{}, domains: map[string]map[string]any{}}
	for w := int64(0); w <= v; w++ {
		data, err := l.Get(t.Context(), delta.CommitName(table, w))
		if err != nil {
			t.Fatal(err)
		}
		r.ict, r.txnID = nil, ""
		for _, s := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var a line
			if err := json.Unmarshal([]byte(s), &a); err != nil {
				t.Fatal(err)
			}
			switch {
			case a.Add != nil:
				live[a.Add.Path+"\x00"+string(a.Add.DeletionVector)] = a.Add.Size
			case a.Remove != nil:
				delete(live, a.Remove.Path+"\x00"+string(a.Remove.DeletionVector))
			case a.MetaData != nil:
				r.metadata = a.MetaData
			case a.Protocol != nil:
				r.protocol = a.Protocol
			case a.Txn != nil:
				r.txns[a.Txn["appId"].(string)] = a.Txn
			case a.Domain != nil:
				if a.Domain["removed"] == true {
					delete(r.domains, a.Domain["domain"].(string))
				} else {
					r.domains[a.Domain["domain"].(string)] = a.Domain
				}
			case a.CommitInfo != nil:
				if raw, ok := a.CommitInfo["inCommitTimestamp"]; ok {
					var ict int64
					if err := json.Unmarshal(raw, &ict); err != nil {
						t.Fatal(err)
					}
					r.ict = &ict
				}
				if raw, ok := a.CommitInfo["txnId"]; ok {
					_ = json.Unmarshal(raw, &r.txnID)
				}
			}
		}
	}
	for _, size := range live {
		r.numFiles++
		r.sizeBytes += size
	}
	return r
}

// checkChecksums checks the .crc file of every version of table: it must
// be there for each version in ours (pilake's commits), absent for the
// others (another writer's), and equal what replayTo gives.
func checkChecksums(t *testing.T, l lake.Lake, table string, ours map[int64]bool) {
	t.Helper()
	last := int64(-1)
	for v := range ours {
		last = max(last, v)
	}
	for v := int64(0); v <= last; v++ {
		data, err := l.Get(t.Context(), delta.ChecksumName(table, v))
		if !ours[v] {
			if err == nil {
				t.Errorf("version %d (another writer's) has a .crc pilake wrote: %s", v, data)
			}
			continue
		}
		if err != nil {
			t.Errorf("version %d: no .crc: %v", v, err)
			continue
		}
		var got struct {
			delta.VersionChecksum
			Metadata map[string]any `json:"metadata"`
			Protocol map[string]any `json:"protocol"`
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Errorf("version %d: .crc %s: %v", v, data, err)
			continue
		}
		want := replayTo(t, l, table, v)
		if got.NumFiles != want.numFiles || got.TableSizeBytes != want.sizeBytes || got.NumMetadata != 1 || got.NumProtocol != 1 {
			t.Errorf("version %d: .crc numFiles %d tableSizeBytes %d numMetadata %d numProtocol %d, replay %d files of %d bytes",
				v, got.NumFiles, got.TableSizeBytes, got.NumMetadata, got.NumProtocol, want.numFiles, want.sizeBytes)
		}
		if !reflect.DeepEqual(got.Metadata, want.metadata) {
			t.Errorf("version %d: .crc metadata %v, replay %v", v, got.Metadata, want.metadata)
		}
		if !reflect.DeepEqual(got.Protocol, want.protocol) {
			t.Errorf("version %d: .crc protocol %v, replay %v", v, got.Protocol, want.protocol)
		}
		ictOn := want.metadata["configuration"].(map[string]any)["delta.enableInCommitTimestamps"] == "true"
		switch {
		case ictOn && (got.InCommitTimestampOpt == nil || want.ict == nil || *got.InCommitTimestampOpt != *want.ict):
			t.Errorf("version %d: In-Commit Timestamps on, .crc inCommitTimestampOpt %v, commit's %v", v, got.InCommitTimestampOpt, want.ict)
		case !ictOn && got.InCommitTimestampOpt != nil:
			t.Errorf("version %d: In-Commit Timestamps off, .crc inCommitTimestampOpt %d", v, *got.InCommitTimestampOpt)
		}
		if got.TxnID != want.txnID {
			t.Errorf("version %d: .crc txnId %q, commit's %q", v, got.TxnID, want.txnID)
		}
		if got.SetTransactions == nil || got.DomainMetadata == nil {
			t.Errorf("version %d: .crc without setTransactions or domainMetadata: %.200s", v, data)
			continue
		}
		txns := map[string]map[string]any{}
		for _, x := range *got.SetTransactions {
			m := map[string]any{"appId": x.AppID, "version": float64(x.Version)}
			if x.LastUpdated != 0 {
				m["lastUpdated"] = float64(x.LastUpdated)
			}
			txns[x.AppID] = m
		}
		if !reflect.DeepEqual(txns, want.txns) {
			t.Errorf("version %d: .crc setTransactions %v, replay %v", v, txns, want.txns)
		}
		domains := map[string]map[string]any{}
		for _, d := range *got.DomainMetadata {
			domains[d.Domain] = map[string]any{"domain": d.Domain, "configuration": d.Configuration, "removed": d.Removed}
		}
		if !reflect.DeepEqual(domains, want.domains) {
			t.Errorf("version %d: .crc domainMetadata %v, replay %v", v, domains, want.domains)
		}
	}
}

// TestVersionChecksums: every commit pilake writes (creation, appends,
// compaction, a metaData change of its own, appends after another writer
// changed the protocol and metadata, enabled In-Commit Timestamps and
// removed a domain, appends of a Table started from a checkpoint) has a
// .crc equal to an independent replay of the log up to that version; the
// other writer's commits have none.
func TestVersionChecksums(t *testing.T) {
	for _, policy := range []string{delta.CheckpointClassic, delta.CheckpointV2} {
		t.Run(policy, func(t *testing.T) { testVersionChecksums(t, policy) })
	}
}

func testVersionChecksums(t *testing.T, policy string) {
	ctx := t.Context()
	l := newLake(t)
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	now := day.Add(3 * 24 * time.Hour)
	opts := delta.Options{CheckpointInterval: 4, CheckpointPolicy: policy, Now: func() time.Time { return now },
		Properties: map[string]string{delta.PropCheckpointInterval: "4"}}
	tb, err := delta.Open[schema.SilverRow](ctx, l, "v", opts)
	if err != nil {
		t.Fatal(err)
	}
	ours := map[int64]bool{}
	for v := int64(0); v <= tb.Snapshot().Version; v++ {
		ours[v] = true // creation (and the properties commit, if any)
	}
	var files []delta.AddFile
	n := 0
	appendRows := func(tb *delta.Table, rows int) {
		t.Helper()
		var rs []schema.SilverRow
		for range rows {
			n++
			rs = append(rs, schema.SilverRow{Device: fmt.Sprintf("d%d", n%3), WindowStart: day.Add(time.Duration(n) * time.Minute).UnixMicro()})
		}
		add, err := delta.WriteFile(ctx, tb, rs, nil)
		if err != nil {
			t.Fatal(err)
		}
		v, err := tb.Commit(ctx, []delta.Action{{Add: &add}, {Txn: &delta.Txn{AppID: "pilake-test", Version: int64(n), LastUpdated: now.UnixMilli()}}}, "WRITE")
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, add)
		ours[v] = true
	}
	for i := range 6 {
		appendRows(tb, 1+i)
	}
	// Compaction: one day file for the six (adds and removes).
	if removed, err := delta.Compact[schema.SilverRow](ctx, tb, delta.CompactOptions{}); err != nil || removed != 6 {
		t.Fatalf("compacted %d files: %v", removed, err)
	}
	ours[tb.Snapshot().Version] = true
	appendRows(tb, 2)
	appendRows(tb, 3)

	// Another writer: the protocol goes to writer version 7 with features
	// pilake honours, the metadata gains a nullable column and change data
	// feed, a domain and a txn of its own, a file added and one of pilake's
	// removed. Written by hand; pilake's Table does not know of it yet.
	w := logWriter{t, l, "v"}
	snap := tb.Snapshot()
	// Reader version 3 (with an empty list of reader features for the
	// classic table: a list that must stay, empty, in the .crc).
	proto := snap.Protocol
	proto.MinReaderVersion, proto.MinWriterVersion = 3, 7
	proto.WriterFeatures = append(slices.Clone(proto.WriterFeatures), "appendOnly", "invariants", "changeDataFeed", "domainMetadata")
	rawProto := obj{"protocol": obj{"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": append([]string{}, proto.ReaderFeatures...),
		"writerFeatures": proto.WriterFeatures}}
	md := snap.Metadata
	md.SchemaString = strings.TrimSuffix(md.SchemaString, "]}") + `,{"name":"site","type":"string","nullable":true,"metadata":{}}]}`
	md.Configuration = map[string]string{"delta.enableChangeDataFeed": "true"}
	for k, v := range snap.Metadata.Configuration {
		md.Configuration[k] = v
	}
	other := snap.Version + 1
	w.commit(other, obj{"commitInfo": obj{"operation": "SET TBLPROPERTIES", "engineInfo": "another writer"}},
		rawProto, delta.Action{MetaData: &md},
		obj{"domainMetadata": obj{"domain": "delta.rowTracking.x", "configuration": `{"k":1}`, "removed": false}},
		obj{"domainMetadata": obj{"domain": "other.domain", "configuration": "{}", "removed": false}},
		obj{"txn": obj{"appId": "other-app", "version": 7, "lastUpdated": 1}},
		addAction("other/part-0.parquet", map[string]string{}, 12345, nil),
		obj{"remove": obj{"path": files[len(files)-1].Path, "deletionTimestamp": now.UnixMilli(), "dataChange": true, "size": files[len(files)-1].Size}})
	appendRows(tb, 1) // loses the race for version `other`, commits after it
	if v := tb.Snapshot().Version; v != other+1 {
		t.Fatalf("pilake's append after the other writer's commit %d is version %d", other, v)
	}
	appendRows(tb, 2)

	// The other writer again: In-Commit Timestamps on, a domain removed.
	snap = tb.Snapshot()
	proto = snap.Protocol
	proto.WriterFeatures = append(slices.Clone(proto.WriterFeatures), "inCommitTimestamp")
	rawProto["protocol"].(obj)["writerFeatures"] = proto.WriterFeatures
	md = snap.Metadata
	md.Configuration = map[string]string{"delta.enableInCommitTimestamps": "true", "delta.inCommitTimestampEnablementVersion": fmt.Sprint(snap.Version + 1),
		"delta.inCommitTimestampEnablementTimestamp": fmt.Sprint(now.UnixMilli() + 5000)}
	for k, v := range snap.Metadata.Configuration {
		md.Configuration[k] = v
	}
	w.commit(snap.Version+1, obj{"commitInfo": obj{"inCommitTimestamp": now.UnixMilli() + 5000, "operation": "SET TBLPROPERTIES"}},
		rawProto, delta.Action{MetaData: &md},
		obj{"domainMetadata": obj{"domain": "other.domain", "configuration": "{}", "removed": true}})
	appendRows(tb, 1)
	appendRows(tb, 1)
	if err := tb.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}

	// A Table started from that checkpoint (its live files and their sizes
	// read from it) goes on.
	tb2, err := delta.Open[schema.SilverRow](ctx, l, "v", opts)
	if err != nil {
		t.Fatal(err)
	}
	appendRows(tb2, 4)
	appendRows(tb2, 1)
	if tb.ChecksumErrors() != 0 || tb2.ChecksumErrors() != 0 {
		t.Errorf("checksum errors: %d, %d", tb.ChecksumErrors(), tb2.ChecksumErrors())
	}
	checkChecksums(t, l, "v", ours)
	if _, err := delta.Load(ctx, l, "v"); err != nil {
		t.Fatal(err)
	}
}

// checksumLake fails version checksum writes.
type checksumLake struct {
	lake.Lake
}

func (c checksumLake) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	if strings.HasSuffix(name, ".crc") {
		return errors.New("injected failure")
	}
	return c.Lake.PutIfAbsent(ctx, name, data)
}

// TestChecksumFailureKeepsCommit: a .crc that cannot be written fails no
// commit; it is logged and counted. A .crc already there (not pilake's) is
// not overwritten.
func TestChecksumFailureKeepsCommit(t *testing.T) {
	ctx := t.Context()
	mem := lake.NewMemory()
	var logged bytes.Buffer
	var hook []error
	opts := delta.Options{Logger: slog.New(slog.NewTextHandler(&logged, nil)), ChecksumFailed: func(err error) { hook = append(hook, err) }}
	tb, err := delta.Open[schema.SilverRow](ctx, checksumLake{mem}, "f", opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		add, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "a", WindowStart: int64(i)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatalf("commit failed with its .crc: %v", err)
		}
	}
	// 4 failures: version 0 (Open's) and three appends.
	if tb.ChecksumErrors() != 4 || len(hook) != 4 || strings.Count(logged.String(), "version checksum file not written") != 4 {
		t.Errorf("checksum errors %d, hook %d, log %q; want 4", tb.ChecksumErrors(), len(hook), logged.String())
	}
	if objs, _ := mem.List(ctx, "f/_delta_log/"); slices.ContainsFunc(objs, func(o lake.Object) bool { return strings.HasSuffix(o.Name, ".crc") }) {
		t.Error("a .crc was written")
	}
	if snap, err := delta.Load(ctx, mem, "f"); err != nil || snap.Version != 3 || snap.NumFiles() != 3 {
		t.Fatalf("after failed .crc writes: %v", err)
	}

	// Someone else's .crc at the next version stays as it was.
	tb, err = delta.Open[schema.SilverRow](ctx, mem, "f", opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := mem.Put(ctx, delta.ChecksumName("f", 4), []byte("someone else's")); err != nil {
		t.Fatal(err)
	}
	add, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "a", WindowStart: 9}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil || v != 4 {
		t.Fatalf("commit %d: %v", v, err)
	}
	if data, _ := mem.Get(ctx, delta.ChecksumName("f", 4)); string(data) != "someone else's" || tb.ChecksumErrors() != 1 {
		t.Errorf("existing .crc now %q, %d errors", data, tb.ChecksumErrors())
	}
}

// TestReaderIgnoresChecksums: .crc files, pilake's, garbage ones and one
// beyond the last commit, play no part in loading a table.
func TestReaderIgnoresChecksums(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	tb, err := delta.Open[schema.SilverRow](ctx, l, "r", delta.Options{CheckpointInterval: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		add, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "a", WindowStart: int64(i)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range map[string]string{
		delta.ChecksumName("r", 4):                  "not json",
		delta.ChecksumName("r", 5):                  `{"tableSizeBytes":1,"numFiles":99,"numMetadata":1,"numProtocol":1}`,
		delta.ChecksumName("r", 9):                  `{"tableSizeBytes":1,"numFiles":1,"numMetadata":1,"numProtocol":1}`,
		"r/_delta_log/00000000000000000006.crc.tmp": "x",
		"r/_delta_log/x.crc":                        "x",
	} {
		if err := l.Put(ctx, name, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(how string, snap *delta.Snapshot, err error, v int64, files int) {
		t.Helper()
		if err != nil || snap.Version != v || snap.NumFiles() != files {
			t.Fatalf("%s with stray .crc files: %v", how, err)
		}
	}
	snap, err := delta.Load(ctx, l, "r")
	check("Load", snap, err, 5, 5)
	snap, err = delta.LoadVersion(ctx, l, "r", 4)
	check("LoadVersion(4)", snap, err, 4, 4)
	if err := l.Delete(ctx, delta.LastCheckpointName("r")); err != nil {
		t.Fatal(err)
	}
	snap, err = delta.Load(ctx, l, "r")
	check("Load by listing", snap, err, 5, 5)
	rows, err := delta.ReadTable[schema.SilverRow](ctx, l, "r", nil)
	if err != nil || len(rows) != 5 {
		t.Fatalf("ReadTable: %d rows, %v", len(rows), err)
	}
	if _, err := delta.Open[schema.SilverRow](ctx, l, "r", delta.Options{}); err != nil {
		t.Fatal(err)
	}
}

// TestCleanupLogChecksums: log cleanup deletes a version's .crc with its
// commit and keeps those of the versions it keeps; a .crc's age plays no
// part in choosing the cutoff (it is not a commit); vacuum never touches
// _delta_log, however old its files.
func TestCleanupLogChecksums(t *testing.T) {
	ctx := t.Context()
	l := newLake(t)
	now := time.Now()
	tb, err := delta.Open[schema.SilverRow](ctx, l, "c", delta.Options{CheckpointInterval: 5, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		add, err := delta.WriteFile(ctx, tb, []schema.SilverRow{{Device: "a", WindowStart: int64(i)}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tb.Commit(ctx, []delta.Action{{Add: &add}}, "WRITE"); err != nil {
			t.Fatal(err)
		}
	}
	old := now.Add(-60 * 24 * time.Hour)
	// Every .crc ancient, every commit recent: nothing goes.
	for v := int64(0); v <= 12; v++ {
		age(t, l, delta.ChecksumName("c", v), old)
	}
	if n, err := tb.CleanupLog(ctx, 30*24*time.Hour); err != nil || n != 0 {
		t.Fatalf("CleanupLog with only the .crc files old deleted %d, %v", n, err)
	}
	// Commits 0..7 old: the cutoff commit is 7, the cutoff checkpoint 5.
	for v := int64(0); v <= 7; v++ {
		age(t, l, delta.CommitName("c", v), old)
	}
	n, err := tb.CleanupLog(ctx, 30*24*time.Hour)
	if err != nil || n != 10 { // commits and .crc files 0..4
		t.Fatalf("CleanupLog deleted %d, %v; want 10", n, err)
	}
	for v := int64(0); v <= 12; v++ {
		c, k := exists(t, l, delta.CommitName("c", v)), exists(t, l, delta.ChecksumName("c", v))
		if c != (v >= 5) || k != c {
			t.Errorf("version %d after cleanup: commit %v, .crc %v", v, c, k)
		}
	}
	// Vacuum: everything old, nothing of _delta_log goes.
	objs, err := l.List(ctx, delta.LogDir("c"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		age(t, l, o.Name, old)
	}
	if _, err := tb.Vacuum(ctx, 7*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if !exists(t, l, o.Name) {
			t.Errorf("vacuum deleted %s", o.Name)
		}
	}
}
