// Package landing turns a received message into a durable landing object:
// it decodes and validates the batch, writes the bytes as received under
// landing/{device}/{boot:016x}/{seq:020d}.{bin|json} put-if-absent (so a
// redelivered batch lands once), hands the batch to the stages, and sets
// input it cannot use aside in _quarantine/ with the reason.
//
// The caller acknowledges the message to its transport (MQTT PUBACK, IoT Hub
// routing checkpoint) only after Land returns without error: then the
// message is durable in the lake (landed or quarantined). Land blocks while
// the lake is unreachable (the lake retries) or the stages are behind, which
// is how back-pressure reaches the broker and, through it, the agents' spools.
//
// On a local disk, landing writes are made durable in groups (one syncfs(2)
// for every write that finished meanwhile) rather than one fsync per object:
// an fsync costs ~10 ms here, so per-object fsyncs would cap one collector at
// ~100 batches/s per connection.
package landing
