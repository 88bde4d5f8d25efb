package live

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/pilake/pilake/agent/wire"
)

// MQTTOptions says where the collector's live feed is.
type MQTTOptions struct {
	Broker string // tcp://host:port
	// ClientID defaults to "pilake-dashboard-" and a random suffix.
	ClientID string
	// Username and Password authenticate to the broker if set.
	Username, Password string
	// TLS configures ssl:// brokers (CA, client certificate); nil: defaults.
	TLS *tls.Config
	// GoldN is the moving-average length to forward (default 8).
	GoldN  int32
	Logger *slog.Logger
}

// MQTTStats counts what the upstream subscription received.
type MQTTStats struct {
	Received, Rejected atomic.Uint64
}

// RunMQTT subscribes once to wire.LiveFilter on the broker and publishes every
// valid update into hub until ctx ends. It keeps reconnecting while the
// broker is away and tells hub whether the feed is online. Invalid messages
// are counted and logged (at most once a second), never forwarded.
func RunMQTT(ctx context.Context, cfg MQTTOptions, hub *Hub, stats *MQTTStats) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if stats == nil {
		stats = &MQTTStats{}
	}
	goldN := cfg.GoldN
	if goldN == 0 {
		goldN = 8
	}
	clientID := cfg.ClientID
	if clientID == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		clientID = "pilake-dashboard-" + hex.EncodeToString(b[:])
		if cfg.Username != "" {
			// The collector's broker takes an identity's client id as the
			// identity, or the identity followed by ':'.
			clientID = cfg.Username + ":" + hex.EncodeToString(b[:])
		}
	}
	source := "mqtt " + cfg.Broker
	hub.SetStatus("connecting", source, "")

	var lastWarn atomic.Int64
	onMessage := func(_ mqtt.Client, m mqtt.Message) {
		stats.Received.Add(1)
		u, err := DecodeLiveUpdate(m.Topic(), m.Payload(), goldN)
		if err == nil {
			_, err = hub.Publish(u)
		}
		if err != nil {
			stats.Rejected.Add(1)
			now := time.Now().Unix()
			if last := lastWarn.Load(); now > last && lastWarn.CompareAndSwap(last, now) {
				log.Warn("dropping live message", "topic", m.Topic(), "err", err, "rejected_total", stats.Rejected.Load())
			}
		}
	}
	opts := mqtt.NewClientOptions().
		AddBroker(cfg.Broker).
		SetClientID(clientID).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(5 * time.Second).
		SetOnConnectHandler(func(c mqtt.Client) {
			// Subscribe on every (re)connect: a clean session forgets subscriptions.
			tok := c.Subscribe(wire.LiveFilter, 0, onMessage)
			go func() {
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					err := tok.Error()
					if err == nil {
						err = errors.New("no SUBACK in 10 s")
					}
					log.Error("subscribing to live feed", "broker", cfg.Broker, "err", err)
					hub.SetStatus("offline", source, "subscribe failed: "+err.Error())
					return
				}
				log.Info("subscribed to live feed", "broker", cfg.Broker, "filter", wire.LiveFilter)
				hub.SetStatus("online", source, "")
			}()
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			log.Warn("live feed connection lost", "broker", cfg.Broker, "err", err)
			hub.SetStatus("offline", source, "broker connection lost: "+err.Error())
		}).
		SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) {
			hub.SetStatus("offline", source, "reconnecting to broker")
		})
	if cfg.Username != "" {
		opts.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	if cfg.TLS != nil {
		opts.SetTLSConfig(cfg.TLS)
	}
	c := mqtt.NewClient(opts)
	tok := c.Connect() // with ConnectRetry, retries in the background until it works
	go func() {
		select {
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				hub.SetStatus("offline", source, "connecting: "+err.Error())
			}
		case <-time.After(3 * time.Second):
			if !c.IsConnectionOpen() {
				hub.SetStatus("offline", source, "cannot reach the broker; retrying")
			}
		case <-ctx.Done():
		}
	}()
	<-ctx.Done()
	c.Disconnect(250)
	hub.SetStatus("offline", source, "dashboard stopping")
	return nil // connection problems were reported through the hub's status while running
}
