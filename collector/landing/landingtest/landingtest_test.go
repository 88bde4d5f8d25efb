package landingtest_test

import (
	"runtime"
	"testing"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/landing/landingtest"
)

func encoded(t *testing.T, device string, seq uint64) []byte {
	t.Helper()
	b := &wire.Batch{DeviceID: device, BootID: 0xb007, Seq: seq, IntervalUS: 2500,
		Readings: []wire.Reading{{TimeUS: 1_800_000_000_000_000 + int64(seq)*2500, Temp: 2150, Press: 101325 * 256, Hum: 45 * 1024}}}
	data, err := wire.NewEncoder(wire.Binary).Append(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A batch landed by two Landers (as after a restart) is counted twice.
func TestCopies(t *testing.T) {
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, land := range [][]uint64{{1, 2}, {2}} {
		ld, err := landing.New(landing.Options{Lake: lk})
		if err != nil {
			t.Fatal(err)
		}
		for _, seq := range land {
			if out, err := ld.Land(t.Context(), landing.Message{Data: encoded(t, "pi-1", seq), Source: "mqtt"}); err != nil || out != landing.OutcomeLanded {
				t.Fatalf("Land: %v %v", out, err)
			}
		}
	}
	got := landingtest.Copies(t, lk)
	k1 := (&wire.Batch{DeviceID: "pi-1", BootID: 0xb007, Seq: 1}).Key()
	k2 := (&wire.Batch{DeviceID: "pi-1", BootID: 0xb007, Seq: 2}).Key()
	if len(got) != 2 || got[k1] != 1 || got[k2] != 2 {
		t.Fatalf("Copies = %v, want %s once and %s twice", got, k1, k2)
	}
}

// recorder is a testing.TB whose Fatal ends only the goroutine it runs in.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Fatal(args ...any) { r.failed = true; runtime.Goexit() }

func (r *recorder) Fatalf(format string, args ...any) { r.failed = true; runtime.Goexit() }

// A batch alone in an object that is not a segment fails the test.
func TestCopiesNonSegmentFails(t *testing.T) {
	lk, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := encoded(t, "pi-1", 1)
	var b wire.Batch
	if err := wire.Decode(data, &b); err != nil {
		t.Fatal(err)
	}
	if err := lk.Put(t.Context(), "landing/"+b.Key()+".bin", data); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		landingtest.Copies(r, lk)
	}()
	<-done
	if !r.failed {
		t.Fatal("Copies accepted an object that is not a segment")
	}
}
