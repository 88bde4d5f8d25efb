// Command loadgen measures the collector: it publishes pre-encoded batches
// for N simulated devices through an MQTT broker, one connection per device
// (as real agents have), and reports readings per second from the first
// publish until the collector's bronze holds every reading, plus the
// collector's peak RSS.
//
//	loadgen --broker tcp://127.0.0.1:1883 --devices 5000 --seconds 10 \
//	    --metrics http://127.0.0.1:9102/metrics --pid $(pidof collector)
//
// The "raw move" baseline is --raw-subscribe: the same batches published the
// same way to a plain broker (scripts/bench-collector.sh starts a private
// Mosquitto), and a plain QoS 1 subscriber in this process that appends each
// one to a file; the run ends when the subscriber has them all (fsynced).
// --serve-raw ADDR is a cheaper variant of a baseline: an embedded broker
// (the collector's own broker package) whose only work is to append every
// telemetry payload to one file before acknowledging it.
//
// It speaks just enough MQTT 3.1.1 (CONNECT, PUBLISH QoS 1, PUBACK) to keep
// its own CPU use small: it shares the machine with what it measures.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/broker"
	"github.com/pilake/pilake/internal/conf"
)

type config struct {
	configFile string
	broker     string
	devices    int
	rate       int
	batch      time.Duration
	seconds    int
	window     int
	encoding   string
	metrics    string
	metric     string
	pid        int
	prefix     string
	serveRaw   string
	rawDir     string
	rawSub     bool
	timeout    time.Duration
}

func main() {
	var c config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&c.configFile, conf.ConfigFlag, "", "configuration file")
	fs.StringVar(&c.broker, "broker", "tcp://127.0.0.1:1883", "MQTT broker to publish to")
	fs.IntVar(&c.devices, "devices", 5000, "simulated devices (one MQTT connection each)")
	fs.IntVar(&c.rate, "rate", 400, "readings per second per device")
	fs.DurationVar(&c.batch, "batch", time.Second, "event time per batch")
	fs.IntVar(&c.seconds, "seconds", 10, "event-time seconds of data per device (batches = seconds / batch)")
	fs.IntVar(&c.window, "window", 4, "unacknowledged publishes per connection")
	fs.StringVar(&c.encoding, "encoding", "binary", "batch encoding: binary, zstd or json")
	fs.StringVar(&c.metrics, "metrics", "", "collector /metrics URL: wait until bronze holds every reading")
	fs.StringVar(&c.metric, "metric", "pilake_collector_bronze_readings_total", "the readings counter to wait for in --metrics")
	fs.IntVar(&c.pid, "pid", 0, "process whose peak RSS to report (rss_mib)")
	fs.StringVar(&c.prefix, "prefix", "", "prefix of the result names (raw_move_ for the baseline)")
	fs.StringVar(&c.serveRaw, "serve-raw", "", "run the raw-move baseline broker on this address instead")
	fs.StringVar(&c.rawDir, "raw-dir", os.TempDir(), "directory of the raw-move file")
	fs.BoolVar(&c.rawSub, "raw-subscribe", false, "raw move: a plain QoS 1 subscriber on --broker appends every batch to a file in --raw-dir; done when it has them all")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up after this long")
	if err := conf.Load(fs, os.Args[1:], "PILAKE_LOADGEN_", os.LookupEnv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if c.serveRaw != "" {
		err = serveRaw(ctx, c, log)
	} else {
		err = generate(ctx, c, log, os.Stdout)
	}
	if err != nil {
		log.Error("loadgen failed", "err", err)
		os.Exit(1)
	}
}

// serveRaw is the baseline: receive, append to one file, acknowledge.
func serveRaw(ctx context.Context, c config, log *slog.Logger) error {
	f, err := os.Create(filepath.Join(c.rawDir, "raw-move.bin"))
	if err != nil {
		return fmt.Errorf("creating raw-move file: %w", err)
	}
	var mu sync.Mutex
	w := bufio.NewWriterSize(f, 1<<20)
	var lenBuf [4]byte
	b, err := broker.New(context.WithoutCancel(ctx), broker.Options{Addr: c.serveRaw, TopicPrefix: "pilake/v1/telemetry/", Logger: log,
		Handler: func(_ context.Context, _, _ string, payload []byte) error {
			mu.Lock()
			defer mu.Unlock()
			binary.LittleEndian.PutUint32(lenBuf[:], uint32(len(payload)))
			w.Write(lenBuf[:])
			_, err := w.Write(payload)
			return err
		}})
	if err != nil {
		return err
	}
	log.Info("raw-move broker listening", "addr", b.Addr().String(), "file", f.Name())
	<-ctx.Done()
	b.Close()
	mu.Lock()
	defer mu.Unlock()
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

// rawSubscriber is the raw-move baseline's plain subscriber: paho, QoS 1,
// every payload appended (length-prefixed) to one file, fsynced at the end.
type rawSubscriber struct {
	client paho.Client
	f      *os.File
	w      *bufio.Writer
	mu     sync.Mutex
	got    int64
	want   int64
	done   chan struct{}
	err    error
}

func startRawSubscriber(brokerURL, dir string, want int64) (*rawSubscriber, error) {
	f, err := os.Create(filepath.Join(dir, "raw-move.bin"))
	if err != nil {
		return nil, fmt.Errorf("creating raw-move file: %w", err)
	}
	s := &rawSubscriber{f: f, w: bufio.NewWriterSize(f, 1<<20), want: want, done: make(chan struct{})}
	var lenBuf [4]byte
	handler := func(_ paho.Client, m paho.Message) {
		s.mu.Lock()
		defer s.mu.Unlock()
		binary.LittleEndian.PutUint32(lenBuf[:], uint32(len(m.Payload())))
		s.w.Write(lenBuf[:])
		if _, err := s.w.Write(m.Payload()); err != nil && s.err == nil {
			s.err = err
		}
		s.got++
		if s.got == s.want {
			if err := s.w.Flush(); err != nil && s.err == nil {
				s.err = err
			}
			if err := s.f.Sync(); err != nil && s.err == nil {
				s.err = err
			}
			close(s.done)
		}
	}
	s.client = paho.NewClient(paho.NewClientOptions().AddBroker(brokerURL).
		SetClientID(fmt.Sprintf("raw-move-%d", os.Getpid())).SetCleanSession(true).SetOrderMatters(true).
		SetMessageChannelDepth(1 << 16))
	if tok := s.client.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("raw subscriber: connecting: %v", tok.Error())
	}
	if tok := s.client.Subscribe(wire.TelemetryFilter, 1, handler); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("raw subscriber: subscribing: %v", tok.Error())
	}
	return s, nil
}

func (s *rawSubscriber) wait(ctx context.Context) error {
	select {
	case <-s.done:
		return s.err
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		return fmt.Errorf("raw subscriber has %d of %d batches: %w", s.got, s.want, ctx.Err())
	}
}

func (s *rawSubscriber) close() {
	s.client.Disconnect(100)
	s.f.Close()
}

// device holds one simulated device's pre-built PUBLISH packets.
type device struct {
	id      string
	packets [][]byte
}

func buildDevices(c config) ([]device, int, int64, error) {
	var enc wire.Encoding
	switch c.encoding {
	case "binary":
		enc = wire.Binary
	case "zstd":
		enc = wire.BinaryZstd
	case "json":
		enc = wire.JSON
	default:
		return nil, 0, 0, fmt.Errorf("unknown encoding %q", c.encoding)
	}
	perBatch := int(int64(c.rate) * c.batch.Microseconds() / 1e6)
	nBatches := int(time.Duration(c.seconds) * time.Second / c.batch)
	if perBatch < 1 || nBatches < 1 || nBatches > 65535 {
		return nil, 0, 0, errors.New("want at least one reading per batch and 1-65535 batches")
	}
	interval := int64(1e6 / c.rate)
	// Event time ends now, so no reading is from the future.
	t0 := time.Now().Add(-time.Duration(c.seconds) * time.Second).UnixMicro()
	e := wire.NewEncoder(enc)
	devs := make([]device, c.devices)
	var bytes int64
	var buf []byte
	b := &wire.Batch{BootID: uint64(time.Now().UnixNano()), IntervalUS: uint32(interval), Flags: wire.FlagClockSynced}
	b.Readings = make([]wire.Reading, perBatch)
	for d := range devs {
		id := fmt.Sprintf("sim-%05d", d)
		devs[d].id = id
		b.DeviceID = id
		topic := wire.TelemetryTopic(id)
		phase := float64(d) / float64(c.devices) * 2 * math.Pi
		for k := range nBatches {
			b.Seq = uint64(k + 1)
			start := t0 + int64(k)*c.batch.Microseconds()
			for i := range b.Readings {
				n := k*perBatch + i
				fresh := n%4 == 0 // ~100 conversions/s at 400 Hz polling
				conv := n - n%4
				b.Readings[i] = wire.Reading{
					TimeUS: start + int64(i)*interval + int64(n%7),
					Temp:   2150 + int32(200*math.Sin(phase+float64(conv)/4000)) + int32(conv%3),
					Press:  uint32(101325*256 + 256*int(50*math.Cos(phase+float64(conv)/8000)) + conv%5),
					Hum:    uint32(45*1024 + int(1024*math.Sin(phase+float64(conv)/6000)) + conv%11),
					Fresh:  fresh,
				}
			}
			var err error
			buf, err = e.Append(buf[:0], b)
			if err != nil {
				return nil, 0, 0, fmt.Errorf("encoding: %w", err)
			}
			devs[d].packets = append(devs[d].packets, publishPacket(topic, uint16(k+1), buf))
			bytes += int64(len(buf))
		}
	}
	return devs, perBatch, bytes, nil
}

// publishPacket encodes an MQTT 3.1.1 PUBLISH, QoS 1.
func publishPacket(topic string, id uint16, payload []byte) []byte {
	rem := 2 + len(topic) + 2 + len(payload)
	p := make([]byte, 0, 5+rem)
	p = append(p, 0x32)
	p = appendVarint(p, rem)
	p = binary.BigEndian.AppendUint16(p, uint16(len(topic)))
	p = append(p, topic...)
	p = binary.BigEndian.AppendUint16(p, id)
	return append(p, payload...)
}

func appendVarint(p []byte, n int) []byte {
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		p = append(p, b)
		if n == 0 {
			return p
		}
	}
}

func connectPacket(clientID string) []byte {
	rem := 10 + 2 + len(clientID)
	p := []byte{0x10}
	p = appendVarint(p, rem)
	p = append(p, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60) // clean session, keepalive 60 s
	p = binary.BigEndian.AppendUint16(p, uint16(len(clientID)))
	return append(p, clientID...)
}

// readPacket reads one MQTT packet and returns its type nibble and body.
func readPacket(r *bufio.Reader, body []byte) (byte, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mult
		mult *= 128
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("bad remaining length")
		}
	}
	if cap(body) < n {
		body = make([]byte, n)
	}
	body = body[:n]
	_, err = io.ReadFull(r, body)
	return h >> 4, body, err
}

func generate(ctx context.Context, c config, log *slog.Logger, out io.Writer) error {
	u, err := url.Parse(c.broker)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--broker %q: want tcp://host:port", c.broker)
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	log.Info("encoding batches", "devices", c.devices, "seconds", c.seconds)
	devs, perBatch, payloadBytes, err := buildDevices(c)
	if err != nil {
		return err
	}
	nBatches := len(devs[0].packets)
	total := int64(c.devices) * int64(nBatches) * int64(perBatch)
	var baseline float64
	if c.metrics != "" {
		if baseline, err = counterValue(ctx, c.metrics, c.metric); err != nil {
			return err
		}
	}

	log.Info("connecting", "devices", c.devices, "broker", u.Host)
	conns := make([]net.Conn, len(devs))
	sem := make(chan struct{}, 64)
	var cwg sync.WaitGroup
	var cerr atomic.Value
	for i := range devs {
		cwg.Add(1)
		sem <- struct{}{}
		go func() {
			defer cwg.Done()
			defer func() { <-sem }()
			conn, err := dialMQTT(ctx, u.Host, fmt.Sprintf("loadgen-%d-%s", os.Getpid(), devs[i].id))
			if err != nil {
				cerr.Store(err)
				return
			}
			conns[i] = conn
		}()
	}
	cwg.Wait()
	defer func() {
		for _, cn := range conns {
			if cn != nil {
				cn.Close()
			}
		}
	}()
	if err, _ := cerr.Load().(error); err != nil {
		return err
	}

	var sub *rawSubscriber
	if c.rawSub {
		if sub, err = startRawSubscriber(c.broker, c.rawDir, int64(nBatches*len(devs))); err != nil {
			return err
		}
		defer sub.close()
	}
	log.Info("publishing", "batches", nBatches*len(devs), "readings", total)
	var acked atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(devs))
	for i := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runDevice(ctx, conns[i], devs[i].packets, c.window, &acked); err != nil {
				errs <- fmt.Errorf("device %s: %w", devs[i].id, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	ackedAt := time.Since(start)
	done := ackedAt
	if sub != nil {
		if err := sub.wait(ctx); err != nil {
			return err
		}
		done = time.Since(start)
	}
	if c.metrics != "" {
		for {
			v, err := counterValue(ctx, c.metrics, c.metric)
			if err != nil {
				return err
			}
			if v-baseline >= float64(total) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s is %.0f of %d readings: %w", c.metric, v-baseline, total, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
		done = time.Since(start)
	}
	fmt.Fprintf(out, "%sreadings_per_s=%.0f\n", c.prefix, float64(total)/done.Seconds())
	fmt.Fprintf(out, "%sacked_readings_per_s=%.0f\n", c.prefix, float64(total)/ackedAt.Seconds())
	fmt.Fprintf(out, "%sbatches_per_s=%.0f\n", c.prefix, float64(nBatches*len(devs))/done.Seconds())
	fmt.Fprintf(out, "%sbytes_per_reading=%.2f\n", c.prefix, float64(payloadBytes)/float64(total))
	if c.pid > 0 {
		if rss, err := peakRSS(c.pid); err == nil {
			fmt.Fprintf(out, "%srss_mib=%.0f\n", c.prefix, rss)
		} else {
			log.Warn("reading peak RSS", "err", err)
		}
	}
	log.Info("done", "readings", total, "acked_after", ackedAt, "in_bronze_after", done)
	return nil
}

func dialMQTT(ctx context.Context, host, clientID string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", err)
	}
	if _, err := conn.Write(connectPacket(clientID)); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	typ, body, err := readPacket(bufio.NewReaderSize(conn, 16), nil)
	conn.SetReadDeadline(time.Time{})
	if err != nil || typ != 2 || len(body) != 2 || body[1] != 0 {
		conn.Close()
		return nil, fmt.Errorf("no CONNACK (type %d, %x): %v", typ, body, err)
	}
	return conn, nil
}

// runDevice publishes packets keeping at most window unacknowledged.
func runDevice(ctx context.Context, conn net.Conn, packets [][]byte, window int, acked *atomic.Int64) error {
	credits := make(chan struct{}, window)
	readErr := make(chan error, 1)
	go func() {
		r := bufio.NewReaderSize(conn, 256)
		var body []byte
		for n := 0; n < len(packets); {
			typ, b, err := readPacket(r, body)
			body = b
			if err != nil {
				readErr <- fmt.Errorf("reading PUBACK: %w", err)
				return
			}
			if typ == 4 { // PUBACK
				n++
				acked.Add(1)
				<-credits
			}
		}
		readErr <- nil
	}()
	for _, p := range packets {
		select {
		case credits <- struct{}{}:
		case err := <-readErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
		if _, err := conn.Write(p); err != nil {
			return fmt.Errorf("publishing: %w", err)
		}
	}
	select {
	case err := <-readErr:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func counterValue(ctx context.Context, metricsURL, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading collector metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("collector metrics lack %s", name)
}

// peakRSS returns the process's peak resident set (VmHWM) in MiB.
func peakRSS(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmHWM in /proc status")
}
