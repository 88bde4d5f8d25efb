// Package landing turns received messages into durable landing objects: it
// decodes and validates each batch, gathers the valid ones into segments
// (many batches per object, like Event Hubs Capture files), hands each batch
// to the stages once its segment is durable, and sets input it cannot use
// aside in _quarantine/ with the reason.
//
// # Segments
//
// A segment is named landing/-seg/{yyyy-mm-dd}/{hh}/{instance}-{counter:016x}.seg
// (UTC write time; instance is 16 random hex digits chosen when the Lander
// starts, counter counts its segments) and written put-if-absent. It holds
// "PLSEG" 0x01 and then records, each uvarint(len(body)) body crc32c(body);
// a body is varint(received_at µs) uvarint(len(source)) source payload, the
// payload being the batch exactly as received (binary v1 or JSON, with its
// own device, boot, sequence number and CRC). EncodeSegment and
// DecodeSegment read and write them.
//
// One object per batch cost ~30 % of the collector's CPU at 5,000 devices
// (create, write, link and unlink of a ~1 KB file, ~45 µs of kernel time a
// batch), and on Azure one billed PUT per batch, ~16k requests/s at that
// load. A few writers each take every batch queued while they were busy as
// one segment, so segments grow with the load (one batch when idle; up to
// 1,024 batches or 4 MiB).
//
// # Acknowledgement
//
// The caller acknowledges the message to its transport (MQTT PUBACK, IoT Hub
// routing checkpoint) only after Land returns without error: then the
// message is durable in the lake (landed or quarantined). If a segment's
// write fails, every Land call in it fails, and nothing in it counts as
// landed. Land blocks while the lake is unreachable (the lake retries) or
// the stages are behind, which is how back-pressure reaches the broker and,
// through it, the agents' spools.
//
// On a local disk, writes are made durable in groups (one syncfs(2) for
// every write that finished meanwhile) rather than one fsync per object:
// an fsync costs ~10 ms here.
//
// # Duplicates
//
// A batch delivered twice is in bronze once; the landing archive may hold a
// redelivered copy. The Lander remembers, per stream (device and boot), the
// sequence numbers it made durable, so a redelivery to the same process is
// OutcomeDuplicate and is not written again. A redelivery that arrives
// before the first copy is durable, after a restart, or at another
// collector of a shared subscription is landed again, in another segment;
// the stages keep one copy in bronze (they record every stream's sequence
// numbers with each epoch).
//
// # Goroutines
//
// New starts the segment flushers and, on a lake with group commit, the
// writers and the syncer; Land starts one to finish a landing whose caller
// gave up. Close, once nothing lands any more, writes the open segment,
// waits for those landings and stops them all.
package landing
