// Package spool keeps encoded batches on disk from the moment they are made
// until the broker has acknowledged them, so nothing is lost while the network
// or the broker is down, or when the agent is killed or the power is cut.
//
// # Layout
//
// A spool is a directory of segment files named after the id of their first
// record ("00000000000000000042.seg"). Records get consecutive ids for the
// spool's whole life. Each record is one write(2) of a 36-byte header followed
// by the payload (an encoded batch), so an SD card sees one append per batch:
//
//	off size field
//	0   2    magic "PS"
//	2   1    version (1)
//	3   1    flags (0)
//	4   4    payload length, little endian
//	8   4    readings in the batch
//	12  8    boot id of the batch
//	20  8    sequence number of the batch
//	28  4    CRC-32C (Castagnoli) of bytes 2..28 and the payload
//	32  4    reserved (0)
//	36  ...  payload
//
// A record leaves the spool when it is acknowledged ([Spool.Ack]): a segment
// file is deleted once every record in it is acknowledged and a newer segment
// exists. Which records are acknowledged is kept in memory and checkpointed to
// the file "acked" (written atomically, at most every CheckpointInterval and
// at Close; default 30 s, a small rewrite that SD cards tolerate far better
// than one per batch), so after a crash at most the acknowledgements of the
// last CheckpointInterval are forgotten and those batches are sent again; pilake's
// collector lands a batch under its device/boot/seq name, so a resend is
// harmless.
//
// # Crashes and power cuts
//
// On Open every segment is scanned and every record's CRC checked. A torn
// tail (a record cut short by kill -9 or a power cut, or one whose CRC does
// not match) ends the scan of that segment: the file is truncated to its last
// good record and the loss is logged and counted. Appends always go to a new
// segment after Open.
//
// What a power cut can lose depends on the fsync policy:
//
//   - FsyncAlways: fsync after every append; nothing appended is lost.
//   - FsyncInterval (the default, 5 s): fsync on the first append at least
//     FsyncInterval after the previous fsync; a power cut loses at most the
//     records appended in the last FsyncInterval plus one batch interval.
//   - FsyncNever: the kernel writes back when it likes (ext4 commits every
//     5 s by default, dirty pages age out after 30 s): up to ~30 s.
//
// In every case the batch still being collected in memory (up to one batch
// interval) is lost, and batches already acknowledged by the broker are safe.
//
// # Byte cap
//
// The spool never holds more than MaxBytes (default 256 MiB): when an append
// would pass it, whole oldest segments are deleted first, and the readings in
// their unacknowledged records are added to DroppedReadings.
package spool
