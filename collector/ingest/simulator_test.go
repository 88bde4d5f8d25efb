package ingest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hamba/avro/v2/ocf"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/ingest"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/landing/landingtest"
)

// realSimulatorMessage is the text the Azure IoT Raspberry Pi web simulator
// sends (Azure-Samples/raspberry-pi-web-simulator: JSON.stringify of
// messageId, deviceId, temperature, humidity), as captured from an IoT Hub.
const realSimulatorMessage = `{"messageId":11,"deviceId":"Raspberry Pi Web Client","temperature":25.392375779726308,"humidity":76.39404260045663}`

func TestIoTHubDeviceID(t *testing.T) {
	for id, want := range map[string]string{
		"rpi-kitchen":             "rpi-kitchen",
		"rpi:kitchen":             "rpi_3Akitchen",
		"Raspberry Pi Web Client": "Raspberry_20Pi_20Web_20Client",
		"a_b":                     "a_5Fb",
		"-lead":                   "_2Dlead",
		".lead":                   "_2Elead",
		"x%*?!(),:=@$'.-y":        "x_25_2A_3F_21_28_29_2C_3A_3D_40_24_27.-y",
	} {
		got, err := ingest.IoTHubDeviceID(id)
		if err != nil || got != want || !wire.ValidDeviceID(got) {
			t.Errorf("IoTHubDeviceID(%q) = %q, %v; want %q", id, got, err, want)
			continue
		}
		back, err := ingest.IoTHubDeviceIDOf(got)
		if err != nil || back != id {
			t.Errorf("IoTHubDeviceIDOf(%q) = %q, %v; want %q", got, back, err, id)
		}
	}
	if _, err := ingest.IoTHubDeviceID(strings.Repeat(":", 30)); err == nil {
		t.Error("an id mapping beyond 64 characters accepted")
	}
	if _, err := ingest.IoTHubDeviceID(""); err == nil {
		t.Error("empty id accepted")
	}
	for _, bad := range []string{"a_", "a_4", "a_zz", "a_3a"} {
		if _, err := ingest.IoTHubDeviceIDOf(bad); err == nil {
			t.Errorf("IoTHubDeviceIDOf(%q) accepted", bad)
		}
	}
}

// simRecord is one routed simulator message.
type simRecord struct {
	device, gen, enqueued string
	body                  string
	jsonBody              bool // contentType application/json, contentEncoding utf-8
}

func (r simRecord) sysProps() map[string]string {
	p := map[string]string{"connectionDeviceId": r.device, "connectionAuthMethod": `{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}`,
		"connectionDeviceGenerationId": r.gen, "enqueuedTime": r.enqueued}
	if r.gen == "" {
		delete(p, "connectionDeviceGenerationId")
	}
	if r.jsonBody {
		p["contentType"], p["contentEncoding"] = "application/json", "utf-8"
	}
	return p
}

// simAvroFile and simJSONFile write routing files exactly as IoT Hub's
// storage endpoint does (Avro: the Message record; JSON: one object a line,
// Body base64 unless the message declared JSON in utf-8).
func simAvroFile(t *testing.T, codec ocf.CodecName, recs []simRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc, err := ocf.NewEncoder(ingest.RoutingSchema, &buf, ocf.WithCodec(codec), ocf.WithBlockLength(2))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := enc.Encode(avroMessage{EnqueuedTimeUtc: r.enqueued, Properties: map[string]string{"temperatureAlert": "false"},
			SystemProperties: r.sysProps(), Body: []byte(r.body)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func simJSONFile(t *testing.T, recs []simRecord) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, r := range recs {
		rec := map[string]any{"EnqueuedTimeUtc": r.enqueued, "Properties": map[string]string{"temperatureAlert": "false"}, "SystemProperties": r.sysProps()}
		if r.jsonBody {
			rec["Body"] = json.RawMessage(r.body)
		} else {
			rec["Body"] = base64.StdEncoding.EncodeToString([]byte(r.body))
		}
		line, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(append(line, '\n'))
	}
	return buf.Bytes()
}

// simHandler is the collector's routing handler (collector/main.go).
func simHandler(ld *landing.Lander, lk lake.Lake) ingest.RoutingHandler {
	return func(ctx context.Context, file string, rec ingest.RoutingRecord) error {
		m := landing.Message{Data: rec.Body, Source: "iothub", Topic: fmt.Sprintf("%s#%d", file, rec.Index), Device: rec.DeviceID, ReceivedAt: rec.EnqueuedTime}
		if rec.Err != nil {
			return landing.QuarantineRecord(ctx, lk, rec.Body, landing.Record{Reason: rec.Err.Error(), Kind: landing.KindEnvelope, Source: "iothub", Topic: m.Topic})
		}
		data, device, err := ingest.RoutedBatch(rec, wire.NewEncoder(wire.Binary))
		if err != nil {
			return ld.Quarantine(ctx, m, landing.KindEnvelope, "IoT Hub simulator message: "+err.Error())
		}
		m.Data, m.Device = data, device
		_, err = ld.Land(ctx, m)
		return err
	}
}

func TestSimulatorRoutingFiles(t *testing.T) {
	withPressure := `{"messageId":12,"deviceId":"Raspberry Pi Web Client","temperature":25.4,"humidity":76.4,"pressure":1013.25}`
	recs := []simRecord{
		{device: "rpi-web", gen: "638000000000000001", enqueued: "2026-11-24T12:00:01.0000001Z", body: realSimulatorMessage},
		{device: "rpi:kitchen", gen: "638000000000000002", enqueued: "2026-11-24T12:00:02.1234567Z", body: withPressure},
		{device: "rpi:kitchen", gen: "638000000000000002", enqueued: "2026-11-24T12:00:02.1234567Z", body: withPressure}, // routed twice
		{device: "rpi:kitchen", gen: "638000000000000002", enqueued: "2026-11-24T12:00:04.5Z", jsonBody: true,
			body: `{"messageId":13,"deviceId":"Raspberry Pi Web Client","temperature":-3.5,"humidity":0,"pressure":99000.5}`},
		{device: "rpi-web", gen: "638000000000000001", enqueued: "2026-11-24T12:00:05Z", body: `{"messageId":14,"deviceId":"x","temperature":120,"humidity":50,"pressure":1000}`},
		{device: "rpi-web", gen: "638000000000000001", enqueued: "2026-11-24T12:00:06Z", body: `{"messageId":15,"deviceId":"x","temperature":20,"humidity":50,"pressure":1000,"extra":1}`},
		{device: "rpi-web", gen: "", enqueued: "2026-11-24T12:00:07Z", body: `{"messageId":16,"deviceId":"x","temperature":20,"humidity":50,"pressure":1000}`},
	}
	// a pilake batch in the same file goes through untouched
	recs = append(recs, simRecord{device: "pi-1", gen: "1", enqueued: "2026-11-24T12:00:08Z", body: string(encodeBatch(t, wire.Binary, "pi-1", 7, 1, 10))})
	for _, format := range []string{"avro-deflate", "avro", "json"} {
		t.Run(format, func(t *testing.T) {
			ctx := t.Context()
			lk := lake.NewMemory()
			ld, err := landing.New(landing.Options{Lake: lk, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			var file []byte
			switch format {
			case "avro-deflate":
				file = simAvroFile(t, ocf.Deflate, recs)
			case "avro":
				file = simAvroFile(t, ocf.Null, recs)
			default:
				file = simJSONFile(t, recs)
			}
			files := lake.NewMemory()
			if err := files.Put(ctx, "hub/0/2026/11/24/12/00."+format, file); err != nil {
				t.Fatal(err)
			}
			r, err := ingest.NewRouting(ctx, ingest.RoutingOptions{Files: files, Prefix: "hub/", State: lk, Handler: simHandler(ld, lk),
				Quarantine: func(ctx context.Context, f string, data []byte, reason string) error {
					t.Errorf("file %s quarantined: %s", f, reason)
					return nil
				}, Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			if n, err := r.Poll(ctx); err != nil || n != 1 {
				t.Fatalf("Poll = %d, %v", n, err)
			}
			var batches []*wire.Batch
			var real *wire.Batch
			pilake := 0
			for _, b := range landedBatches(t, lk) {
				switch b.DeviceID {
				case "pi-1":
					pilake++
				case "rpi-web":
					real = b
				default:
					batches = append(batches, b)
				}
			}
			if len(batches) != 2 || real == nil || pilake != 1 || ld.Stats().Duplicates.Load() != 1 {
				t.Fatalf("landed %d simulator batches with pressure (%v), the real message's: %v, %d pilake batches, %d duplicates; want 2, landed, 1 and 1",
					len(batches), batches, real != nil, pilake, ld.Stats().Duplicates.Load())
			}
			// The simulator's real message has no pressure: it lands flagged
			// so, its pressure stored as null (TestSimulatorToBronze).
			wantReal := wire.Reading{TimeUS: time.Date(2026, 11, 24, 12, 0, 1, 100, time.UTC).UnixMicro(), Temp: 2539, Press: 0, Hum: 78227, Fresh: true}
			if real.Flags != wire.FlagNoPressure || len(real.Readings) != 1 || real.Readings[0] != wantReal {
				t.Errorf("real message's batch: flags %#x, readings %+v; want flags %#x, %+v", real.Flags, real.Readings, wire.FlagNoPressure, wantReal)
			}
			if batches[0].Seq > batches[1].Seq {
				batches[0], batches[1] = batches[1], batches[0]
			}
			k1, k2 := batches[0], batches[1]
			if k1.DeviceID != "rpi_3Akitchen" || k2.DeviceID != "rpi_3Akitchen" || k1.BootID != k2.BootID || k1.Seq >= k2.Seq {
				t.Errorf("batches %+v %+v: want rpi:kitchen's two, one stream, in order", k1, k2)
			}
			want := wire.Reading{TimeUS: time.Date(2026, 11, 24, 12, 0, 2, 123456700, time.UTC).UnixMicro(), Temp: 2540, Press: 101325 * 256, Hum: 78234, Fresh: true}
			if k1.Readings[0] != want || k1.Seq != uint64(time.Date(2026, 11, 24, 12, 0, 2, 123456700, time.UTC).UnixNano()/100) {
				t.Errorf("first reading %+v seq %d; want %+v", k1.Readings[0], k1.Seq, want)
			}
			if r := k2.Readings[0]; r.Temp != -350 || r.Hum != 0 || r.Press != 99000*256+128 {
				t.Errorf("second reading %+v", r)
			}
			reasons := quarantineReasons(t, lk)
			for _, w := range []string{"temperature 120", "unknown field \"extra\"", "connectionDeviceGenerationId"} {
				found := false
				for _, r := range reasons {
					found = found || strings.Contains(r, w)
				}
				if !found {
					t.Errorf("no quarantine reason with %q in %q", w, reasons)
				}
			}
			if len(reasons) != 3 {
				t.Errorf("%d quarantine reasons, want 3: %q", len(reasons), reasons)
			}
		})
	}
}

func landedBatches(t *testing.T, lk lake.Lake) []*wire.Batch {
	t.Helper()
	segs, err := lk.List(t.Context(), landing.SegmentDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []*wire.Batch
	for _, o := range segs {
		data, err := lk.Get(t.Context(), o.Name)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := landing.DecodeSegment(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			b := &wire.Batch{}
			if err := wire.Decode(r.Payload, b); err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
	}
	return out
}

func quarantineReasons(t *testing.T, lk lake.Lake) []string {
	t.Helper()
	var out []string
	for _, rec := range landingtest.Quarantined(t, lk) {
		out = append(out, rec.Reason)
	}
	return out
}

func FuzzSimulatorBatch(f *testing.F) {
	f.Add([]byte(realSimulatorMessage), "rpi-web", "638000000000000001")
	f.Add([]byte(`{"messageId":1,"deviceId":"d","temperature":20,"humidity":40,"pressure":1000}`), "a:b", "1")
	f.Add([]byte(`{"messageId":-1}`), "", "")
	f.Fuzz(func(t *testing.T, body []byte, device, gen string) {
		rec := ingest.RoutingRecord{Body: body, DeviceID: device, EnqueuedTime: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC),
			SystemProperties: map[string]string{"connectionDeviceGenerationId": gen}}
		b, err := ingest.SimulatorBatch(rec)
		if err != nil {
			if b != nil {
				t.Fatal("a batch with an error")
			}
			return
		}
		if err := b.Validate(); err != nil {
			t.Fatalf("invalid batch accepted: %v", err)
		}
		back, err := ingest.IoTHubDeviceIDOf(b.DeviceID)
		if err != nil || back != device {
			t.Fatalf("device %q maps to %q and back to %q, %v", device, b.DeviceID, back, err)
		}
		if _, err := wire.NewEncoder(wire.Binary).Append(nil, b); err != nil {
			t.Fatal(err)
		}
	})
}
