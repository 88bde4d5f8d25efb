package live

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Status is the state of the upstream feed, shown by the page.
type Status struct {
	// Live is "online", "offline" or "connecting".
	Live string `json:"live"`
	// Source names the upstream ("mqtt tcp://…", "databricks", …), never a secret.
	Source string `json:"source"`
	// Detail says why the feed is offline, if it is.
	Detail string `json:"detail,omitempty"`
	// LastUpdateMS is when the last update arrived (unix ms), 0 if none yet.
	LastUpdateMS int64 `json:"last_update_ms"`
	// Seq is the number of the newest update in the hub.
	Seq uint64 `json:"seq"`
}

// Entry is one numbered update in the hub's ring.
type Entry struct {
	Seq    uint64
	Device string
	JSON   []byte  // the Update, marshalled once for all clients
	Update *Update // the same, decoded; never modified after Publish
}

// maxDevices bounds the set of device ids a hub remembers.
const maxDevices = 100000

// Hub keeps the newest updates in a bounded ring and wakes subscribers when
// one arrives. One upstream feeds it; any number of clients read it.
type Hub struct {
	now func() time.Time

	mu      sync.Mutex
	ring    []Entry // circular; ring[(first+i)%len] for i < n
	first   int
	n       int
	seq     uint64 // number of the newest entry (0: none yet)
	status  Status
	devices map[string]int64 // device → unix ms of its newest capture
	subs    map[chan struct{}]struct{}

	maxBytes int64 // bound on the ring's bytes (entryBytes of each)
	bytes    int64
	// evicted counts entries dropped early to keep the ring under maxBytes.
	evicted uint64
}

// DefaultRingBytes bounds the bytes a hub's ring holds unless SetMaxBytes
// says otherwise: the updates come from the network, and a count bound alone
// let large updates take the ring to gigabytes.
const DefaultRingBytes = 64 << 20

// entryBytes estimates what an entry holds: its JSON, and the decoded
// Update (columns of about the same size as the JSON's numbers).
func entryBytes(e Entry) int64 { return 2*int64(len(e.JSON)) + 128 }

// SetMaxBytes bounds the bytes the ring holds (at least one entry is kept).
func (h *Hub) SetMaxBytes(n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.maxBytes = n
	h.trimLocked()
}

// Evicted returns the number of updates dropped from the ring early to keep
// it under its byte bound.
func (h *Hub) Evicted() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.evicted
}

// trimLocked drops the oldest entries while the ring is over its byte bound.
func (h *Hub) trimLocked() {
	for h.n > 1 && h.maxBytes > 0 && h.bytes > h.maxBytes {
		h.bytes -= entryBytes(h.ring[h.first])
		h.ring[h.first] = Entry{}
		h.first = (h.first + 1) % len(h.ring)
		h.n--
		h.evicted++
	}
}

// NewHub returns a hub that keeps the newest size updates for resuming
// clients. now is the clock (time.Now if nil).
func NewHub(size int, now func() time.Time) *Hub {
	if size < 1 {
		size = 1
	}
	if now == nil {
		now = time.Now
	}
	return &Hub{
		now:      now,
		ring:     make([]Entry, size),
		status:   Status{Live: "connecting"},
		devices:  map[string]int64{},
		subs:     map[chan struct{}]struct{}{},
		maxBytes: DefaultRingBytes,
	}
}

// Publish numbers u, stores it and wakes every subscriber. It returns u's number.
func (h *Hub) Publish(u Update) (uint64, error) {
	u.Silver.Normalize() // browsers get [] for no points, never null
	u.Gold.Normalize()
	data, err := json.Marshal(u)
	if err != nil {
		return 0, fmt.Errorf("encoding live update of %s: %w", u.Device, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	e := Entry{Seq: h.seq, Device: u.Device, JSON: data, Update: &u}
	if h.n < len(h.ring) {
		h.ring[(h.first+h.n)%len(h.ring)] = e
		h.n++
	} else {
		h.bytes -= entryBytes(h.ring[h.first])
		h.ring[h.first] = e
		h.first = (h.first + 1) % len(h.ring)
	}
	h.bytes += entryBytes(e)
	h.trimLocked()
	if _, ok := h.devices[u.Device]; ok || len(h.devices) < maxDevices {
		h.devices[u.Device] = int64(u.CaptureMS)
	}
	h.status.LastUpdateMS = h.now().UnixMilli()
	h.wakeLocked()
	return h.seq, nil
}

// SetStatus records the upstream's state (keeping the last update time and
// sequence) and wakes every subscriber so clients learn of it.
func (h *Hub) SetStatus(live, source, detail string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status.Live, h.status.Source, h.status.Detail = live, source, detail
	h.wakeLocked()
}

// Status returns the upstream's current state.
func (h *Hub) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.status
	s.Seq = h.seq
	return s
}

// Recent returns the updates still in the ring (of device only, unless
// device is ""), oldest first. They must not be modified.
func (h *Hub) Recent(device string) []*Update {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*Update, 0, h.n)
	for i := 0; i < h.n; i++ {
		e := h.ring[(h.first+i)%len(h.ring)]
		if device == "" || e.Device == device {
			out = append(out, e.Update)
		}
	}
	return out
}

// Seq returns the number of the newest update (0 if none yet).
func (h *Hub) Seq() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq
}

// Devices returns the devices seen on the feed, with the unix ms of each one's
// newest capture.
func (h *Hub) Devices() map[string]int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int64, len(h.devices))
	for d, t := range h.devices {
		out[d] = t
	}
	return out
}

func (h *Hub) wakeLocked() {
	for ch := range h.subs {
		select {
		case ch <- struct{}{}:
		default: // already signalled; the client will read everything new
		}
	}
}

// Subscribe returns a channel that receives a signal (coalesced) whenever an
// update or status change arrives, and a function that ends the subscription.
func (h *Hub) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

// Subscribers returns the number of current subscriptions.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Since appends to dst the entries numbered after `after` (of device only,
// unless device is ""), and returns them with the number of the newest entry
// and whether entries after `after` were already dropped from the ring (a
// gap the client must fill from history).
func (h *Hub) Since(after uint64, device string, dst []Entry) (entries []Entry, newest uint64, gap bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if after > h.seq { // a number from an earlier process: start afresh
		return dst, h.seq, true
	}
	if h.n == 0 {
		return dst, h.seq, false
	}
	oldest := h.ring[h.first].Seq
	if after+1 < oldest {
		gap = true
		after = oldest - 1
	}
	for i := int(after + 1 - oldest); i < h.n; i++ {
		e := h.ring[(h.first+i)%len(h.ring)]
		if device == "" || e.Device == device {
			dst = append(dst, e)
		}
	}
	return dst, h.seq, gap
}
