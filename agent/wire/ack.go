package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
)

// Landing acknowledgements: what the collector tells a device about its
// batches, on AckTopic(device). Two kinds of message, both small JSON:
//
//	{"v":1,"boot":"00000000000000ab","landed":[[1,40],[42,42]]}
//	{"v":1,"mode":"puback"}
//
// The first says the batches of that boot with those sequence numbers are
// durable in the lake (landed, or set aside in quarantine with a reason):
// the agent may delete them from its spool. Acks are idempotent (a range
// acknowledged twice is the same as once) and cover only what the collector
// landed since its previous ack, so each stays small.
//
// A third asks the device to send again batches of a boot that the
// collector is missing (gaps it sees), if the device still holds them:
//
//	{"v":1,"boot":"00000000000000ab","resend":[[41,41]]}
//
// "landed" and "resend" may come in one message.
//
// The second comes from the collector's embedded broker when the agent
// subscribes: there the broker's PUBACK is only sent once a batch is landed,
// so the agent needs no landing acks (AckModePuback).
type Ack struct {
	// Boot is the boot id of the acknowledged batches.
	Boot uint64
	// Landed are sorted, disjoint closed ranges [lo, hi] of sequence numbers.
	Landed [][2]uint64
	// Resend are ranges (same rules) the collector asks to be sent again.
	Resend [][2]uint64
	// Mode, when not "", is a mode announcement instead (Boot and Landed empty).
	Mode string
}

// AckModePuback is the Mode an embedded broker announces: its PUBACK already
// means "landed".
const AckModePuback = "puback"

// MaxAckRanges bounds the ranges of one Ack (a decoder refuses more).
const MaxAckRanges = 4096

// MaxAckSize bounds an encoded Ack (a decoder refuses more).
const MaxAckSize = 128 * 1024

// ErrAck wraps every error of DecodeAck.
var ErrAck = errors.New("invalid landing ack")

type ackJSON struct {
	V      int         `json:"v"`
	Boot   string      `json:"boot,omitempty"`
	Landed [][2]uint64 `json:"landed,omitempty"`
	Resend [][2]uint64 `json:"resend,omitempty"`
	Mode   string      `json:"mode,omitempty"`
}

// EncodeAck appends a's encoding to dst.
func EncodeAck(dst []byte, a *Ack) []byte {
	if a.Mode != "" {
		dst = append(dst, `{"v":1,"mode":`...)
		dst = strconv.AppendQuote(dst, a.Mode)
		return append(dst, '}')
	}
	dst = append(dst, `{"v":1,"boot":"`...)
	dst = fmt.Appendf(dst, "%016x", a.Boot)
	dst = append(dst, '"')
	for _, f := range []struct {
		name string
		rs   [][2]uint64
	}{{"landed", a.Landed}, {"resend", a.Resend}} {
		if len(f.rs) == 0 {
			continue
		}
		dst = append(dst, `,"`...)
		dst = append(dst, f.name...)
		dst = append(dst, `":[`...)
		for i, r := range f.rs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '[')
			dst = strconv.AppendUint(dst, r[0], 10)
			dst = append(dst, ',')
			dst = strconv.AppendUint(dst, r[1], 10)
			dst = append(dst, ']')
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// DecodeAck parses an Ack from untrusted bytes: version 1, a 16-digit hex
// boot, up to MaxAckRanges sorted disjoint ranges with lo ≥ 1 in landed and
// in resend (at least one range in all) — or a mode.
// Errors wrap ErrAck.
func DecodeAck(data []byte) (Ack, error) {
	if len(data) > MaxAckSize {
		return Ack{}, fmt.Errorf("%w: %d bytes, max %d", ErrAck, len(data), MaxAckSize)
	}
	var j ackJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return Ack{}, fmt.Errorf("%w: %w", ErrAck, err)
	}
	if j.V != 1 {
		return Ack{}, fmt.Errorf("%w: version %d", ErrAck, j.V)
	}
	if j.Mode != "" {
		if j.Boot != "" || len(j.Landed) > 0 || len(j.Resend) > 0 {
			return Ack{}, fmt.Errorf("%w: a mode with ranges", ErrAck)
		}
		return Ack{Mode: j.Mode}, nil
	}
	if len(j.Boot) != 16 {
		return Ack{}, fmt.Errorf("%w: boot %q: want 16 hex digits", ErrAck, truncate(j.Boot, 20))
	}
	boot, err := strconv.ParseUint(j.Boot, 16, 64)
	if err != nil {
		return Ack{}, fmt.Errorf("%w: boot %q: want 16 hex digits", ErrAck, j.Boot)
	}
	if len(j.Landed)+len(j.Resend) == 0 || len(j.Landed) > MaxAckRanges || len(j.Resend) > MaxAckRanges {
		return Ack{}, fmt.Errorf("%w: %d landed and %d resend ranges, want 1-%d", ErrAck, len(j.Landed), len(j.Resend), MaxAckRanges)
	}
	for _, rs := range [][][2]uint64{j.Landed, j.Resend} {
		for i, r := range rs {
			if r[0] == 0 || r[0] > r[1] || i > 0 && (rs[i-1][1] == math.MaxUint64 || rs[i-1][1] >= r[0]) {
				return Ack{}, fmt.Errorf("%w: range %d [%d,%d]: want sorted, disjoint, 1 ≤ lo ≤ hi", ErrAck, i, r[0], r[1])
			}
		}
	}
	return Ack{Boot: boot, Landed: j.Landed, Resend: j.Resend}, nil
}
