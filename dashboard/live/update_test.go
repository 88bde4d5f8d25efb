package live

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pilake/pilake/agent/wire"
)

func TestDecodeLiveUpdate(t *testing.T) {
	valid, err := os.ReadFile("testdata/live-update-valid.json")
	if err != nil {
		t.Fatal(err)
	}
	u, err := DecodeLiveUpdate(wire.LiveTopic("dev-a"), valid, 8)
	if err != nil {
		t.Fatal(err)
	}
	if u.Device != "dev-a" || u.CaptureMS != 1790000001997.5 || u.PublishedMS != 1790000002010 {
		t.Errorf("header %+v", u)
	}
	// sorted by window; gold n=15 dropped
	if !reflect.DeepEqual(u.Silver.T, []int64{1790000000000, 1790000001000}) || u.Silver.TempC[1] != 21.53 {
		t.Errorf("silver %+v", u.Silver)
	}
	if !reflect.DeepEqual(u.Gold.T, []int64{1790000001000}) || u.Gold.PressurePa[0] != 101325.25 {
		t.Errorf("gold %+v", u.Gold)
	}

	tooMany := `{"device":"dev-a","newest_capture_us":1,"silver":[` + strings.Repeat(`{"window_start":1},`, MaxRows) + `{"window_start":1}]}`
	bad := []struct {
		name, topic, payload string
	}{
		{"not a live topic", wire.TelemetryTopic("dev-a"), string(valid)},
		{"invalid device in topic", "pilake/v1/live/..", string(valid)},
		{"device differs from topic", wire.LiveTopic("dev-b"), string(valid)},
		{"not JSON", wire.LiveTopic("dev-a"), "hello"},
		{"number out of range", wire.LiveTopic("dev-a"), `{"device":"dev-a","newest_capture_us":1,"silver":[{"window_start":1,"temp_avg":1e400}]}`},
		{"no capture time", wire.LiveTopic("dev-a"), `{"device":"dev-a","silver":[]}`},
		{"row of another device", wire.LiveTopic("dev-a"), `{"device":"dev-a","newest_capture_us":1,"gold":[{"device":"dev-x","n":8}]}`},
		{"too many rows", wire.LiveTopic("dev-a"), tooMany},
		{"too big", wire.LiveTopic("dev-a"), `{"device":"dev-a","x":"` + strings.Repeat("a", MaxMessageBytes) + `"}`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeLiveUpdate(tc.topic, []byte(tc.payload), 8); !errors.Is(err, ErrBadUpdate) {
				t.Errorf("err = %v, want ErrBadUpdate", err)
			}
		})
	}
}

// FuzzDecodeLiveUpdate: whatever arrives on the live topic, decoding never
// panics, and an accepted update is safe to forward (valid device, JSON-
// encodable, sorted, bounded).
func FuzzDecodeLiveUpdate(f *testing.F) {
	files, _ := filepath.Glob("testdata/live-update-*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add("dev-a", b)
	}
	f.Add("../x", []byte(`{}`))
	f.Fuzz(func(t *testing.T, dev string, payload []byte) {
		u, err := DecodeLiveUpdate(wire.LiveTopic(dev), payload, 8)
		if err != nil {
			if !errors.Is(err, ErrBadUpdate) {
				t.Fatalf("error not wrapping ErrBadUpdate: %v", err)
			}
			return
		}
		if !wire.ValidDeviceID(u.Device) || u.Device != dev {
			t.Fatalf("accepted device %q on topic of %q", u.Device, dev)
		}
		if _, err := json.Marshal(u); err != nil {
			t.Fatalf("accepted update does not encode: %v", err)
		}
		for _, c := range [][]int64{u.Silver.T, u.Gold.T} {
			if len(c) > MaxRows {
				t.Fatalf("%d rows", len(c))
			}
			for i := 1; i < len(c); i++ {
				if c[i] <= c[i-1] {
					t.Fatalf("times not strictly increasing: %v", c)
				}
			}
		}
	})
}
