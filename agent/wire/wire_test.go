package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// synth returns a batch shaped like the agent's at 400 Hz polling of a BME280
// converting about 110 times a second, with the datasheet's RMS noise at
// oversampling ×1 (0.005 °C, 1.3 Pa, 0.02 %RH — see hw's doc for the sources)
// and tens of microseconds of scheduling jitter.
func synth(seed uint64, n int, noHum bool) *Batch {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := &Batch{DeviceID: fmt.Sprintf("pi-%d", seed), BootID: 0x0123456789abcdef ^ seed, Seq: seed + 1,
		IntervalUS: 2500, Flags: FlagClockSynced, MonoOffsetUS: 1_763_000_000_000_000}
	if noHum {
		b.Flags |= FlagNoHumidity
	}
	t0 := int64(1_763_000_000_000_000 + seed*1000)
	const convUS = 9000
	lastConv := int64(-1)
	var temp int32
	var press, hum uint32
	for i := 0; i < n; i++ {
		ts := t0 + int64(i)*2500 + int64(math.Abs(rng.NormFloat64()*20))
		conv := (ts - t0) / convUS
		r := Reading{TimeUS: ts}
		if conv != lastConv {
			lastConv = conv
			temp = int32(math.Round(2150 + 0.5*rng.NormFloat64() + float64(i)/400))
			press = uint32(math.Round(101325*256 + 1.3*256*rng.NormFloat64()))
			if !noHum {
				hum = uint32(math.Round(45*1024 + 0.02*1024*rng.NormFloat64()))
			}
			r.Fresh = true
		}
		r.Temp, r.Press, r.Hum = temp, press, hum
		b.Readings = append(b.Readings, r)
	}
	return b
}

// noPress makes b a batch without pressure (FlagNoPressure, Press 0), as the
// collector makes of the Raspberry Pi simulator's messages.
func noPress(b *Batch) *Batch {
	b.Flags |= FlagNoPressure
	for i := range b.Readings {
		b.Readings[i].Press = 0
	}
	return b
}

// last makes b the last batch of its boot (FlagLast).
func last(b *Batch) *Batch {
	b.Flags |= FlagLast
	return b
}

func TestRoundTrip(t *testing.T) {
	cases := map[string]*Batch{
		"one":             synth(1, 1, false),
		"second":          synth(2, 400, false),
		"no-hum":          synth(3, 400, true),
		"long":            synth(4, 4000, false),
		"repeats":         {DeviceID: "a", BootID: 1, Seq: 1, IntervalUS: 2500, Readings: []Reading{{TimeUS: 5, Temp: 1, Press: MinPress, Hum: 3}, {TimeUS: 5, Temp: 1, Press: MinPress, Hum: 3}}},
		"no-press":        noPress(synth(9, 40, false)),
		"no-press-no-hum": noPress(synth(10, 40, true)),
		"last":            last(synth(11, 40, false)),
		"stale-jump":      {DeviceID: "a.b_c-d", BootID: math.MaxUint64, Seq: math.MaxUint64, IntervalUS: 1, Readings: []Reading{{TimeUS: 0, Temp: MinTemp, Press: MaxPress, Hum: MaxHum, Fresh: true}, {TimeUS: MaxGapUS, Temp: MaxTemp, Press: MinPress, Hum: 0}}},
	}
	for name, b := range cases {
		for _, enc := range []Encoding{Binary, BinaryZstd, JSON} {
			t.Run(name+"/"+enc.String(), func(t *testing.T) {
				data, err := NewEncoder(enc).Append(nil, b)
				if enc == JSON && len(b.Readings) > 1000 {
					if !errors.Is(err, ErrTooLarge) {
						t.Fatalf("err = %v, want ErrTooLarge for %d readings as JSON", err, len(b.Readings))
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				var got Batch
				if err := Decode(data, &got); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(&got, b) {
					t.Fatalf("round trip differs:\n got %+v\nwant %+v", got.Readings[:min(3, len(got.Readings))], b.Readings[:min(3, len(b.Readings))])
				}
			})
		}
	}
}

func TestDecodeReusesBatch(t *testing.T) {
	e := NewEncoder(Binary)
	big, _ := e.Append(nil, synth(5, 800, false))
	small, _ := e.Append(nil, synth(6, 3, true))
	var b Batch
	for _, d := range [][]byte{big, small, big} {
		if err := Decode(d, &b); err != nil {
			t.Fatal(err)
		}
	}
	if len(b.Readings) != 800 || b.Flags&FlagNoHumidity != 0 || b.Readings[0].Hum == 0 {
		t.Fatalf("reused batch decoded wrongly: n=%d flags=%x", len(b.Readings), b.Flags)
	}
}

func TestEncodeRejects(t *testing.T) {
	good := synth(7, 10, false)
	for name, mut := range map[string]func(b *Batch){
		"bad device":          func(b *Batch) { b.DeviceID = "a/b" },
		"long device":         func(b *Batch) { b.DeviceID = strings.Repeat("x", 65) },
		"empty":               func(b *Batch) { b.Readings = nil },
		"seq zero":            func(b *Batch) { b.Seq = 0 },
		"time back":           func(b *Batch) { b.Readings[3].TimeUS = b.Readings[2].TimeUS - 1 },
		"hot":                 func(b *Batch) { b.Readings[1].Temp = 9000 },
		"vacuum":              func(b *Batch) { b.Readings[1].Press = 100 },
		"wet":                 func(b *Batch) { b.Readings[1].Hum = 101 * 1024 },
		"unknown flag":        func(b *Batch) { b.Flags |= 0x40 },
		"hum without hum":     func(b *Batch) { b.Flags |= FlagNoHumidity },
		"press without press": func(b *Batch) { b.Flags |= FlagNoPressure },
		"gap":                 func(b *Batch) { b.Readings[5].TimeUS += MaxGapUS + 1 },
	} {
		t.Run(name, func(t *testing.T) {
			b := *good
			b.Readings = append([]Reading(nil), good.Readings...)
			mut(&b)
			if _, err := NewEncoder(Binary).Append(nil, &b); !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

// reseal recomputes the CRC of a v1 batch after a test altered it.
func reseal(d []byte) []byte {
	d = append([]byte(nil), d...)
	binary.LittleEndian.PutUint32(d[len(d)-4:], crc32.Checksum(d[:len(d)-4], castagnoli))
	return d
}

func TestDecodeRejects(t *testing.T) {
	good, err := NewEncoder(Binary).Append(nil, synth(8, 40, false))
	if err != nil {
		t.Fatal(err)
	}
	withID := func(id string) []byte {
		b := synth(8, 40, false)
		b.DeviceID = "x"
		d, _ := NewEncoder(Binary).Append(nil, b)
		// Replace the 1-byte id "x" by id, keeping everything else.
		out := append([]byte{d[0], d[1], byte(len(id))}, id...)
		return reseal(append(out, d[4:]...))
	}
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrCorrupt},
		{"version 2", reseal(append([]byte{2}, good[1:]...)), ErrVersion},
		{"garbage", []byte("hello"), ErrVersion},
		{"bad crc", append(append([]byte(nil), good[:len(good)-1]...), good[len(good)-1]^1), ErrCorrupt},
		{"truncated", good[:len(good)/2], ErrCorrupt},
		{"short", []byte{1, 0, 0}, ErrCorrupt},
		{"unknown flags", reseal(append([]byte{1, 0x20}, good[2:]...)), ErrVersion},
		{"slash in id", withID("a/b"), ErrInvalid},
		{"dotdot id", withID(".."), ErrInvalid},
		{"trailing", reseal(append(append(append([]byte(nil), good[:len(good)-4]...), 0), 0, 0, 0, 0)), ErrCorrupt},
		{"json syntax", []byte(`[{"deviceId":`), ErrCorrupt},
		{"json empty", []byte(`[]`), ErrInvalid},
		{"json mixed devices", []byte(`[{"deviceId":"a","bootId":"1","seq":1,"temperature":20,"humidity":40,"pressure":100000,"ts":1},{"deviceId":"b","bootId":"1","seq":1,"temperature":20,"humidity":40,"pressure":100000,"ts":2}]`), ErrInvalid},
		{"json out of range", []byte(`[{"deviceId":"a","bootId":"1","seq":1,"temperature":200,"humidity":40,"pressure":100000,"ts":1}]`), ErrInvalid},
		{"json no seq", []byte(`[{"deviceId":"a","bootId":"1","temperature":20,"humidity":40,"pressure":100000,"ts":1}]`), ErrInvalid},
		{"too big", append([]byte{1}, make([]byte, MaxEncodedSize)...), ErrInvalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b Batch
			err := Decode(c.data, &b)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
}

func TestJSONShape(t *testing.T) {
	b := synth(9, 2, false)
	data, err := NewEncoder(JSON).Append(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []map[string]any
	if err := json.Unmarshal(data, &msgs); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, data)
	}
	// The Azure Raspberry Pi simulator's fields, plus pressure.
	for _, k := range []string{"messageId", "deviceId", "temperature", "humidity", "pressure"} {
		if _, ok := msgs[0][k]; !ok {
			t.Errorf("JSON message lacks %q: %s", k, data)
		}
	}
	if msgs[1]["messageId"].(float64) != 2 || msgs[0]["deviceId"] != b.DeviceID {
		t.Errorf("unexpected JSON: %s", data)
	}
}

func TestSize(t *testing.T) {
	// Not a speed test: the size of a 1 s batch at 400 Hz is a property of the
	// format. The target is ≤ 4 bytes per reading.
	b := synth(10, 400, false)
	for _, enc := range []Encoding{Binary, BinaryZstd} {
		data, _ := NewEncoder(enc).Append(nil, b)
		per := float64(len(data)) / 400
		t.Logf("%s: %d bytes, %.2f bytes/reading", enc, len(data), per)
		if per > 4 {
			t.Errorf("%s: %.2f bytes/reading, want ≤ 4", enc, per)
		}
	}
}

func TestGolden(t *testing.T) {
	vectors := map[string]struct {
		b   *Batch
		enc Encoding
	}{
		"v1_one":        {synth(11, 1, false), Binary},
		"v1_400hz":      {synth(12, 400, false), Binary},
		"v1_400hz_zstd": {synth(13, 400, false), BinaryZstd},
		"v1_bmp280":     {synth(14, 16, true), Binary},
		"json_3":        {synth(15, 3, false), JSON},
		"v1_nopress":    {noPress(synth(16, 16, false)), Binary},
		"json_nopress":  {noPress(synth(17, 2, true)), JSON},
	}
	for name, v := range vectors {
		t.Run(name, func(t *testing.T) {
			data, err := NewEncoder(v.enc).Append(nil, v.b)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.MarshalIndent(v.b, "", " ")
			bin := filepath.Join("testdata", name+".bin")
			exp := filepath.Join("testdata", name+".golden.json")
			if *update {
				os.MkdirAll("testdata", 0o755)
				os.WriteFile(bin, data, 0o644)
				os.WriteFile(exp, append(want, '\n'), 0o644)
			}
			stored, err := os.ReadFile(bin)
			if err != nil {
				t.Fatalf("%v (run go test -update once)", err)
			}
			if !bytes.Equal(stored, data) {
				t.Errorf("encoding of %s changed: the format is frozen; bump the version instead", name)
			}
			var got Batch
			if err := Decode(stored, &got); err != nil {
				t.Fatal(err)
			}
			gotJSON, _ := json.MarshalIndent(&got, "", " ")
			expJSON, _ := os.ReadFile(exp)
			if !bytes.Equal(append(gotJSON, '\n'), expJSON) {
				t.Errorf("decoding %s differs from %s", bin, exp)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.bin")
	for _, p := range files {
		d, _ := os.ReadFile(p)
		f.Add(d)
	}
	f.Add([]byte{1, 0, 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0})
	f.Add([]byte(`[{"deviceId":"a","bootId":"1","seq":1,"temperature":20,"humidity":40,"pressure":100000,"ts":1}]`))
	f.Add([]byte(`[{"deviceId":"a","bootId":"1","seq":1,"temperature":20,"humidity":40,"pressure":null,"ts":1,"flags":8}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Batch
		if err := Decode(data, &b); err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v wraps none of the sentinel errors", err)
			}
			return
		}
		// Whatever decodes must re-encode and decode to the same batch.
		for _, enc := range []Encoding{Binary, JSON} {
			again, err := NewEncoder(enc).Append(nil, &b)
			if err != nil {
				t.Fatalf("decoded batch does not re-encode as %s: %v", enc, err)
			}
			var b2 Batch
			if err := Decode(again, &b2); err != nil {
				t.Fatalf("re-encoded batch does not decode: %v", err)
			}
			if !reflect.DeepEqual(&b, &b2) {
				t.Fatalf("%s round trip differs", enc)
			}
		}
	})
}

func BenchmarkEncode(b *testing.B) {
	batch := synth(20, 400, false)
	for _, enc := range []Encoding{Binary, BinaryZstd, JSON} {
		b.Run(enc.String(), func(b *testing.B) {
			e := NewEncoder(enc)
			buf, _ := e.Append(nil, batch)
			size := len(buf)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				buf, _ = e.Append(buf[:0], batch)
			}
			b.ReportMetric(float64(size)/400, "bytes/reading")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/400, "ns/reading")
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	batch := synth(21, 400, false)
	for _, enc := range []Encoding{Binary, BinaryZstd, JSON} {
		b.Run(enc.String(), func(b *testing.B) {
			data, _ := NewEncoder(enc).Append(nil, batch)
			var out Batch
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := Decode(data, &out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/400, "ns/reading")
		})
	}
}

func TestDetectEncoding(t *testing.T) {
	b := synth(30, 400, false)
	for _, enc := range []Encoding{Binary, BinaryZstd, JSON} {
		data, err := NewEncoder(enc).Append(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DetectEncoding(data)
		if err != nil || got != enc {
			t.Errorf("DetectEncoding(%s) = %v, %v", enc, got, err)
		}
	}
	if _, err := DetectEncoding([]byte{0x42}); !errors.Is(err, ErrVersion) {
		t.Errorf("version 0x42: err = %v", err)
	}
	if _, err := DetectEncoding(nil); !errors.Is(err, ErrCorrupt) {
		t.Errorf("empty: err = %v", err)
	}
}
