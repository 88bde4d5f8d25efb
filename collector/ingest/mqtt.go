package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/redact"
	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/internal/backoff"
)

// Handler lands one received message; nil means it may be acknowledged.
type Handler func(ctx context.Context, topic string, payload []byte) error

// MQTTOptions configure RunMQTT.
type MQTTOptions struct {
	// Broker is the broker URL, tcp://host:port (or ssl://, ws://).
	Broker string
	// ClientID must be stable across restarts (the broker keeps the
	// collector's session and queues messages for it while it is down);
	// default "pilake-collector-{hostname}".
	ClientID string
	// Username and Password, if the broker wants them.
	Username, Password string
	// TLS configures ssl:// brokers (CA, client certificate); nil: the
	// system's roots, no client certificate.
	TLS *tls.Config
	// ShareGroup, if set, subscribes as $share/{ShareGroup}/{Filter}: the
	// broker spreads messages over every collector in the group.
	ShareGroup string
	// Filter is the topic filter; default wire.TelemetryFilter.
	Filter string
	// Workers is how many messages are landed at once [128]. Each holds one
	// unacknowledged message; with Buffer this bounds memory, and when all are
	// busy paho stops reading from the socket, so the broker keeps the rest.
	Workers int
	// Buffer is how many received messages may wait for a worker [1024].
	Buffer int
	// Handler lands a message; required.
	Handler Handler
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// RetryDelay is the first delay before retrying a failed landing [100ms];
	// it doubles up to 10 s. A message is retried until it lands or the
	// context ends: never acknowledged before that.
	RetryDelay time.Duration
	// OnConnect, if set, is called after each (re)connection and subscription.
	OnConnect func()
	// OnConnectionLost, if set, is called when the connection drops (paho
	// then reconnects by itself).
	OnConnectionLost func(error)
}

func (o *MQTTOptions) defaults() error {
	if o.Broker == "" {
		return errors.New("mqtt ingest: no broker URL")
	}
	if o.Handler == nil {
		return errors.New("mqtt ingest: no handler")
	}
	if o.ClientID == "" {
		h, _ := os.Hostname()
		o.ClientID = "pilake-collector-" + h
	}
	if o.Filter == "" {
		o.Filter = wire.TelemetryFilter
	}
	if o.Workers <= 0 {
		o.Workers = 128
	}
	if o.Buffer <= 0 {
		o.Buffer = 1024
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 100 * time.Millisecond
	}
	return nil
}

// SubscriptionFilter returns the filter RunMQTT subscribes to.
func (o MQTTOptions) SubscriptionFilter() string {
	f := o.Filter
	if f == "" {
		f = wire.TelemetryFilter
	}
	if o.ShareGroup != "" {
		return "$share/" + o.ShareGroup + "/" + f
	}
	return f
}

// MQTT is a subscription to an external broker.
type MQTT struct {
	opts MQTTOptions

	mu     sync.Mutex
	client paho.Client
}

// NewMQTT checks opts; Run connects.
func NewMQTT(opts MQTTOptions) (*MQTT, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	return &MQTT{opts: opts}, nil
}

// Publish sends a QoS 0 message (live updates) on the ingest connection; it
// fails if not connected. It may block briefly on a slow socket; callers that
// must not block publish from their own goroutine.
func (q *MQTT) Publish(topic string, payload []byte) error {
	q.mu.Lock()
	c := q.client
	q.mu.Unlock()
	if c == nil || !c.IsConnectionOpen() {
		return errors.New("mqtt ingest: not connected")
	}
	tok := c.Publish(topic, 0, false, payload)
	if !tok.WaitTimeout(5 * time.Second) {
		return errors.New("mqtt ingest: publish timed out")
	}
	return tok.Error()
}

// PublishAck sends a QoS 1 message (a landing ack) on the ingest connection
// without waiting for its PUBACK; it fails at once if not connected.
func (q *MQTT) PublishAck(topic string, payload []byte) error {
	q.mu.Lock()
	c := q.client
	q.mu.Unlock()
	if c == nil || !c.IsConnectionOpen() {
		return errors.New("mqtt ingest: not connected")
	}
	c.Publish(topic, 1, false, payload)
	return nil
}

// RunMQTT is NewMQTT followed by Run.
func RunMQTT(ctx context.Context, opts MQTTOptions) error {
	q, err := NewMQTT(opts)
	if err != nil {
		return err
	}
	return q.Run(ctx)
}

// Run subscribes to the broker and lands messages until ctx ends; then it
// stops taking messages, lets the landings in progress finish (those cut
// short are not acknowledged, so the broker redelivers them), and disconnects.
// It returns an error only if it cannot start.
func (q *MQTT) Run(ctx context.Context) error {
	opts := q.opts
	log := opts.Logger.With(slog.String("component", "mqtt-ingest"), slog.String("broker", opts.Broker))
	queue := make(chan paho.Message, opts.Buffer)
	filter := opts.SubscriptionFilter()
	var stopping sync.Once
	stopped := make(chan struct{})

	co := paho.NewClientOptions().AddBroker(opts.Broker).SetClientID(opts.ClientID).
		SetCleanSession(false).SetAutoAckDisabled(true).SetOrderMatters(true).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(10 * time.Second).SetKeepAlive(30 * time.Second).
		SetResumeSubs(true).SetMessageChannelDepth(uint(opts.Buffer))
	if opts.Username != "" {
		co.SetUsername(opts.Username).SetPassword(opts.Password)
	}
	if opts.TLS != nil {
		co.SetTLSConfig(opts.TLS)
	}
	handler := func(_ paho.Client, m paho.Message) {
		// Runs on paho's router goroutine; blocking here when the queue is
		// full stops paho reading the socket (back-pressure to the broker).
		select {
		case queue <- m:
		case <-stopped:
			// Shutting down: not acknowledged, the broker redelivers it.
		}
	}
	co.SetDefaultPublishHandler(handler)
	co.SetOnConnectHandler(func(c paho.Client) {
		tok := c.Subscribe(filter, 1, handler)
		go func() {
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				log.Error("subscribing failed", "filter", filter, "err", tok.Error())
				return
			}
			log.Info("subscribed", "filter", filter)
			if opts.OnConnect != nil {
				opts.OnConnect()
			}
		}()
	})
	co.SetConnectionLostHandler(func(_ paho.Client, err error) {
		log.Warn("connection lost; reconnecting", "err", err)
		if opts.OnConnectionLost != nil {
			opts.OnConnectionLost(err)
		}
	})
	client := paho.NewClient(co)
	log.Info("connecting to the broker (retrying until it answers)", "client_id", opts.ClientID)
	q.mu.Lock()
	q.client = client
	q.mu.Unlock()
	tok := client.Connect()
	select {
	case <-tok.Done():
		if tok.Error() != nil {
			return fmt.Errorf("mqtt ingest: connecting to %s: %w", opts.Broker, tok.Error())
		}
	case <-ctx.Done():
		client.Disconnect(0)
		return nil
	}

	var wg sync.WaitGroup
	for range opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stopped:
					return
				case m := <-queue:
					if landWithRetry(ctx, log, opts, m) {
						m.Ack()
					}
				}
			}
		}()
	}
	<-ctx.Done()
	if opts.ShareGroup != "" {
		// Leave the group: a member that is gone but still subscribed
		// (a persistent session) keeps getting its share of the messages,
		// which then wait for it instead of reaching the other members.
		// Agents resend what no member landed (landing acks).
		if tok := client.Unsubscribe(filter); !tok.WaitTimeout(2*time.Second) || tok.Error() != nil {
			log.Warn("leaving the shared subscription", "filter", filter, "err", tok.Error())
		}
	}
	stopping.Do(func() { close(stopped) })
	wg.Wait()
	// Disconnect without waiting for the broker: unacknowledged messages
	// stay in the collector's session.
	client.Disconnect(250)
	return nil
}

// landWithRetry lands m, retrying with backoff until it succeeds or ctx ends.
func landWithRetry(ctx context.Context, log *slog.Logger, opts MQTTOptions, m paho.Message) bool {
	b := backoff.Backoff{Min: opts.RetryDelay, Max: 10 * time.Second}
	for attempt := 1; ; attempt++ {
		err := opts.Handler(ctx, m.Topic(), m.Payload())
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		log.Warn("landing failed; retrying", "topic", redact.Clean(m.Topic(), 120), "attempt", attempt, "err", err)
		if backoff.Wait(ctx, b.Next()) != nil {
			return false
		}
	}
}
