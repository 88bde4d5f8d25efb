package wire

// Binary format v1. All integers little-endian; "uvarint"/"varint" are
// encoding/binary's (varint = zigzag).
//
//	offset  field
//	0       version      byte, 0x01
//	1       flags        byte: FlagClockSynced, FlagNoHumidity, FlagClockStepped, FlagNoPressure, FlagLast, flagZstd (0x80: body is zstd)
//	2       device       uvarint length + bytes (ValidDeviceID)
//	        boot         8 bytes
//	        seq          uvarint
//	        interval_us  uvarint (nominal sampling interval)
//	        mono_offset  varint  (µs)
//	        n            uvarint (readings, 1..MaxReadings)
//	        body_len     uvarint (bytes of the body as stored, compressed or not)
//	        body         see below, zstd-compressed when flagZstd
//	end-4   crc          uint32, CRC-32C (Castagnoli) of every byte before it
//
// The body is columnar, which is what makes it small (and compress well):
//
//	t0        varint: TimeUS of reading 0
//	dod       n-1 varints: (t[i]-t[i-1]) - interval_us, the delta-of-delta from
//	          the nominal schedule; a drift-free sampler makes these ~0
//	fresh     ceil(n/8) bytes, bit i%8 of byte i/8: reading i is a fresh conversion
//	changed   ceil(n/8) bytes, bit set: reading i carries values; a reading
//	          without values repeats the previous reading's (reading 0 always carries)
//	temp      per carrying reading: varint delta of Temp from the previous carried value
//	          (reading 0: the value itself)
//	press     same for Press (absent when FlagNoPressure)
//	hum       same for Hum (absent when FlagNoHumidity)
//
// At 400 Hz a BME280 converts ~110 times a second, so about three polls in four
// repeat the previous conversion and cost only their timestamp and two bits.
const (
	// Version1 is the version byte of binary format v1.
	Version1 byte = 1

	flagZstd   uint8 = 0x80
	knownFlags       = batchFlags | flagZstd
	crcSize          = 4
)
