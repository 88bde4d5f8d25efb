package main

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/mochi-mqtt/server/v2/hooks/auth"

	"github.com/pilake/pilake/agent/wire"
)

// TestMain lets a test re-execute this test binary as the agent itself
// ("agent-subprocess" followed by the agent's arguments), so a test can
// kill -9 a real agent process.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "agent-subprocess" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[2:], os.LookupEnv, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func startSubprocess(t *testing.T, logName string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"agent-subprocess", "--log-format", "text"}, args...)...)
	logf, err := os.Create(filepath.Join(t.TempDir(), logName))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s:\n%s", logName, b)
		}
	})
	return cmd
}

// TestKill9KeepsSpooledBatches runs an agent process with its broker down
// until batches pile up in the spool, kills it with SIGKILL, tears the tail
// of the newest segment as a power cut in the middle of an append would, and
// starts a new agent on the same spool with the broker up: every spooled
// batch of the killed process except the torn one arrives, in a gap-free
// sequence, and no batch arrives twice with different content.
func TestKill9KeepsSpooledBatches(t *testing.T) {
	dir := t.TempDir()
	spoolDir := filepath.Join(dir, "spool")
	addr := freeAddr(t) // nothing listens yet: the first agent cannot deliver
	metrics := freeAddr(t)
	common := []string{"--simulate", "--device-id", "pi-crash", "--broker", "tcp://" + addr, "--spool-dir", spoolDir,
		"--batch-interval", "200ms", "--reconnect-max", "1s", "--spool-fsync", "always"}

	first := startSubprocess(t, "agent1.log", append(common, "--metrics-addr", metrics)...)
	ra := &runningAgent{done: make(chan int, 1)}
	var spooled int64
	waitHealth(t, ra, metrics, "5 batches in the spool", func(h healthBody) bool {
		spooled = h.SpoolBatches
		return h.SpoolBatches >= 5
	})
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()

	segs, _ := filepath.Glob(filepath.Join(spoolDir, "*.seg"))
	if len(segs) == 0 {
		t.Fatal("no spool segment after kill -9")
	}
	slices.Sort(segs)
	newest := segs[len(segs)-1]
	fi, err := os.Stat(newest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(newest, fi.Size()-7); err != nil { // a torn last record
		t.Fatal(err)
	}

	rec := newRecorder(wire.TopicPrefix + "telemetry/")
	startBroker(t, addr, nil, new(auth.AllowHook), rec)
	summary := filepath.Join(dir, "summary.json")
	second := startSubprocess(t, "agent2.log", append(common, "--metrics-addr", "", "--summary-file", summary)...)

	rec.waitFor(t, "the killed agent's spooled batches and new live ones", func(msgs []message) bool {
		boots := map[uint64]int{}
		for _, m := range msgs {
			var b wire.Batch
			if wire.Decode(m.Payload, &b) == nil {
				boots[b.BootID]++
			}
		}
		return len(boots) == 2 && int64(len(msgs)) >= spooled-1+3
	})
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Fatalf("second agent: %v", err)
	}
	sum := readSummary(t, summary)
	batches := decodeAll(t, rec.messages())
	var oldSeqs []uint64
	for _, b := range batches {
		if hexBoot(b.BootID) != sum.Boot {
			oldSeqs = append(oldSeqs, b.Seq)
		}
	}
	slices.Sort(oldSeqs)
	for i, s := range oldSeqs {
		if s != uint64(i+1) {
			t.Fatalf("killed agent's batches arrived as %v: a gap", oldSeqs)
		}
	}
	if int64(len(oldSeqs)) < spooled-1 {
		t.Fatalf("%d of the killed agent's batches arrived; %d were spooled (one torn)", len(oldSeqs), spooled)
	}
	checkExact(t, sum, batches) // the new boot: exact, as always
	t.Logf("killed agent had %d+ spooled batches; %d arrived after restart", spooled, len(oldSeqs))
}
