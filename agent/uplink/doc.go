// Package uplink delivers spooled batches to an MQTT broker (a generic broker
// or Azure IoT Hub) at QoS 1, and removes each from the spool only once it is
// acknowledged as landed in the collector's lake: by the collector's landing
// ack on the device's ack topic (wire.Ack, wire.AckTopic) behind an external
// broker, or by the PUBACK where that already means landed (the collector's
// embedded broker, which says so; IoT Hub).
//
// [MQTT] is the connection: a fresh paho v1 client per connection, with a
// persistent session (clean session off, client id = device id), TLS (CA,
// client certificate), username/password or a credentials function asked on
// every connect (IoT Hub SAS tokens), a subscription to the ack topic,
// reconnection with capped backoff (also after a connection that ended
// within 10 s, so a failing collector is not stormed), and periodic renewal
// (RenewEvery). It keeps no message store: the spool is the store, and a
// batch in flight when a connection ends is sent again on the next one.
//
// [Forwarder] moves records from the spool to a [Publisher], oldest first
// (so a device's watermark never passes its own backlog), at a capped rate
// while a backlog drains, with a bounded number of messages awaiting a
// PUBACK and, in AckLanded mode, a window of batches not yet landed: what
// stays unlanded past the LandingTimeout, or what the collector asks for
// (a resend request), is sent again.
package uplink
