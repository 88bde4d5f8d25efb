package main

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/pilake/pilake/agent/iothub"
	"github.com/pilake/pilake/agent/wire"
)

// hubAuth makes a mochi broker behave like IoT Hub's MQTT gateway towards
// devices: it accepts a CONNECT only with client id = device id, the username
// "{hub}/{device}/?api-version=2021-04-12" and a SAS token that verifies with
// the device's key (a real HMAC check, iothub.Verify), and lets a device
// publish only to devices/{device}/messages/events/. Azure IoT Hub itself
// cannot run here, so this stands in for it.
type hubAuth struct {
	mqtt.HookBase
	host   string
	device string
	key    []byte

	mu       sync.Mutex
	accepted []string // tokens accepted
	rejected []string // reasons
	seen     chan struct{}
}

func (h *hubAuth) ID() string { return "iothub-auth" }

func (h *hubAuth) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *hubAuth) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user, pass := string(pk.Connect.Username), string(pk.Connect.Password)
	reject := func(why string) bool {
		h.mu.Lock()
		h.rejected = append(h.rejected, why)
		h.mu.Unlock()
		if h.seen != nil {
			select {
			case h.seen <- struct{}{}:
			default:
			}
		}
		return false
	}
	if cl.ID != h.device {
		return reject("client id " + cl.ID)
	}
	if want := h.host + "/" + h.device + "/?api-version=" + iothub.APIVersion; user != want {
		return reject(fmt.Sprintf("username %q, want %q", user, want))
	}
	if err := iothub.Verify(pass, h.host+"/devices/"+h.device, h.key, time.Now()); err != nil {
		return reject(err.Error())
	}
	h.mu.Lock()
	h.accepted = append(h.accepted, pass)
	h.mu.Unlock()
	return true
}

func (h *hubAuth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	return write && strings.HasPrefix(topic, "devices/"+h.device+"/messages/events/")
}

func TestIoTHubUplink(t *testing.T) {
	const host, device = "testhub.azure-devices.net", "pi-hub-01"
	key := []byte("a device key of thirty-two bytes")
	connStr := "HostName=" + host + ";DeviceId=" + device + ";SharedAccessKey=" + base64.StdEncoding.EncodeToString(key)
	caFile, serverTLS := testCA(t, host)
	addr := freeAddr(t)
	hub := &hubAuth{host: host, device: device, key: key}
	rec := newRecorder("devices/")
	startBroker(t, addr, serverTLS, hub, rec)

	for _, enc := range []wire.Encoding{wire.Binary, wire.JSON} {
		t.Run(enc.String(), func(t *testing.T) {
			dir := t.TempDir()
			summary := filepath.Join(dir, "summary.json")
			before := len(rec.messages())
			ra := startAgent(t, "--simulate", "--iothub-connection-string", connStr, "--encoding", enc.String(),
				// The hub's address is overridden to the local broker; the TLS
				// server name stays the hub's host name, checked against the test CA.
				"--broker", "ssl://"+addr, "--tls-ca", caFile,
				"--spool-dir", filepath.Join(dir, "spool"), "--metrics-addr", "", "--summary-file", summary,
				"--batch-interval", "250ms")
			rec.waitFor(t, "4 batches through the hub", func(m []message) bool { return len(m) >= before+4 })
			if code := ra.stop(t); code != 0 {
				t.Fatalf("agent exited with %d", code)
			}
			msgs := rec.messages()[before:]
			for _, m := range msgs {
				bag, ok := strings.CutPrefix(m.Topic, "devices/"+device+"/messages/events/")
				if !ok {
					t.Fatalf("published to %q", m.Topic)
				}
				props, err := url.ParseQuery(bag)
				if err != nil {
					t.Fatal(err)
				}
				if props.Get("$.ct") != iothub.ContentType(enc) || props.Get("enc") != enc.String() {
					t.Fatalf("property bag %v for %s", props, enc)
				}
				if enc == wire.JSON && props.Get("$.ce") != "utf-8" {
					t.Fatalf("JSON message without $.ce=utf-8: %v", props)
				}
				if len(m.Payload) >= iothub.MaxMessageBytes {
					t.Fatalf("message of %d bytes, IoT Hub takes < 256 KB", len(m.Payload))
				}
			}
			checkExact(t, readSummary(t, summary), decodeAll(t, msgs))
		})
	}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if len(hub.accepted) < 2 || len(hub.rejected) != 0 {
		t.Fatalf("hub accepted %d connections and rejected %v", len(hub.accepted), hub.rejected)
	}
}

// TestIoTHubRejectsWrongKey checks that the stand-in hub really verifies the
// signature: an agent with the wrong key never gets a batch through.
func TestIoTHubRejectsWrongKey(t *testing.T) {
	const host, device = "testhub.azure-devices.net", "pi-hub-02"
	caFile, serverTLS := testCA(t, host)
	addr := freeAddr(t)
	hub := &hubAuth{host: host, device: device, key: []byte("the right key"), seen: make(chan struct{}, 1)}
	rec := newRecorder("devices/")
	startBroker(t, addr, serverTLS, hub, rec)
	connStr := "HostName=" + host + ";DeviceId=" + device + ";SharedAccessKey=" + base64.StdEncoding.EncodeToString([]byte("the wrong key"))
	dir := t.TempDir()
	ra := startAgent(t, "--simulate", "--iothub-connection-string", connStr, "--broker", "ssl://"+addr, "--tls-ca", caFile,
		"--spool-dir", filepath.Join(dir, "spool"), "--metrics-addr", "", "--shutdown-timeout", "100ms")
	select {
	case <-hub.seen:
	case <-time.After(20 * time.Second):
		t.Fatal("the hub never saw a connection attempt")
	}
	ra.stop(t)
	if n := len(rec.messages()); n != 0 {
		t.Fatalf("%d messages got through with a wrong key", n)
	}
	hub.mu.Lock()
	first := hub.rejected[0]
	hub.mu.Unlock()
	if !strings.Contains(first, "signature") {
		t.Fatalf("rejected for %q, want a signature mismatch", first)
	}
}
