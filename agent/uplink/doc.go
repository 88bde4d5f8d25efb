// Package uplink delivers spooled batches to an MQTT broker (a generic broker
// or Azure IoT Hub) at QoS 1, and acknowledges each in the spool only once the
// broker's PUBACK has arrived.
//
// [MQTT] is the connection: a fresh paho v1 client per connection, with a
// persistent session (clean session off, client id = device id), TLS (CA,
// client certificate), username/password or a credentials function asked on
// every connect (IoT Hub SAS tokens), reconnection with capped backoff, and
// periodic renewal (RenewEvery). It keeps no message store: the spool is
// the store, and a batch in flight when a connection ends is sent again on
// the next one.
//
// [Forwarder] moves records from the spool to a [Publisher]: the newest
// (live) batch first, then the backlog oldest first at a capped rate, with a
// bounded number of messages in flight, so a long backlog never starves live
// data and never floods the broker or memory.
package uplink
