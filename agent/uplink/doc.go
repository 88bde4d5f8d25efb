// Package uplink delivers spooled batches to an MQTT broker (a generic broker
// or Azure IoT Hub) at QoS 1, and acknowledges each in the spool only once the
// broker's PUBACK has arrived.
//
// [MQTT] is the connection: paho v1 with a persistent session (clean session
// off, client id = device id), auto-reconnect with capped backoff, TLS (CA,
// client certificate) and username/password or a credentials function that
// is asked on every connect (IoT Hub SAS tokens). With RenewEvery set it
// breaks the network connection that often so paho reconnects with fresh
// credentials, keeping its in-flight messages, which it resends.
//
// [Forwarder] moves records from the spool to a [Publisher]: the newest
// (live) batch first, then the backlog oldest first at a capped rate, with a
// bounded number of messages in flight, so a long backlog never starves live
// data and never floods the broker or memory.
package uplink
