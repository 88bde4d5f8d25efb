// Package broker runs the collector's embedded MQTT broker (mochi-mqtt) and
// lands telemetry inside it, so that the PUBACK an agent receives means "this
// batch is durable in the lake".
//
// mochi calls a hook's OnPublish synchronously in the client's read loop and
// sends the PUBACK only after it returns (server.go processPublish in
// mochi-mqtt/server v2.7.9: OnPublish, then buildAck/WritePacket). The
// broker's Handler runs there: while it blocks (lake outage, stages behind),
// that client's further packets wait in TCP, which is back-pressure all the
// way to the agent's spool. When the Handler fails the packet is rejected
// (no PUBACK) and the client is disconnected, so its MQTT client resends the
// batch after reconnecting.
//
// Capability limits are raised from mochi's defaults (inflight, receive
// maximum), which drop messages under load (see FACTS.md). Agents' publishes
// are never dropped: they are landed before the PUBACK, and a client's reads
// simply wait while landing is slow. The per-client queue of outgoing
// deliveries (MaxWritesPending) is kept small instead: it only carries live
// updates to dashboards, which are QoS 0 and best effort.
//
// The PUBACKs of the packets one read brings in are sent together, in one
// write, when the client's goroutine next waits for input (ackConn): still
// each only after its packet was landed, at a fraction of the system calls.
package broker
