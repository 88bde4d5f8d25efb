package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pilake/pilake/scripts/testenv"
)

// privateMosquitto starts a Mosquitto of our own on a free port, so that the
// messages other packages' tests publish on the shared broker (same topics)
// never reach these subscribers. It needs the shared broker's announcement
// (testenv) to decide skip/fail, and the mosquitto binary.
func privateMosquitto(t *testing.T) string {
	t.Helper()
	shared := testenv.Mosquitto(t)
	bin := os.Getenv("PILAKE_MOSQUITTO_BIN")
	if bin == "" {
		bin = "/usr/sbin/mosquitto"
	}
	if _, err := os.Stat(bin); err != nil {
		t.Logf("no %s: using the shared broker %s", bin, shared)
		return shared
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"+
		"max_queued_messages 200000\nlog_dest stderr\nlog_type error\n", port)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", conf)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "tcp://" + addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("private mosquitto did not start on %s", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
