package landing

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/pilake/pilake/collector/lake"
)

// Segment limits: a segment is cut once it holds this many records or bytes
// (it may exceed the byte limit by one batch).
const (
	segmentMaxRecords = 1024
	segmentMaxBytes   = 4 << 20
)

// segWriter gathers the records Land queues into segments and writes them.
// A few flusher goroutines each take what is queued when they are free,
// after lingering up to Options.SegmentLinger for more (unless the segment
// fills), write it as one segment (put-if-absent) and wait until it is
// durable, so segments grow with the load: one record when idle, hundreds
// while a flusher waits for the disk or Azure.
type segWriter struct {
	l        *Lander
	instance string

	mu      sync.Mutex
	cur     *segment
	counter uint64
	space   chan struct{} // closed (and replaced) when cur is taken

	kick chan struct{}  // a flusher should take cur
	full chan struct{}  // cur reached a limit: a lingering flusher should take it now
	stop chan struct{}  // closed by Lander.Close: flushers write what is open and return
	wg   sync.WaitGroup // the flushers
}

// segment is one segment being filled, written, or done.
type segment struct {
	buf  []byte
	n    int         // records
	keys []streamSeq // their batches, marked landed once durable
	name string      // set when taken
	done chan struct{}
	err  error // set before done is closed
}

var segBufs = sync.Pool{New: func() any { return new([]byte) }}

func newSegment() *segment {
	bp := segBufs.Get().(*[]byte)
	return &segment{buf: AppendSegmentHeader((*bp)[:0]), done: make(chan struct{})}
}

func newSegWriter(l *Lander, flushers int) *segWriter {
	w := &segWriter{l: l, instance: l.opts.Instance, cur: newSegment(),
		space: make(chan struct{}), kick: make(chan struct{}, 1), full: make(chan struct{}, 1), stop: make(chan struct{})}
	w.wg.Add(flushers)
	for range flushers {
		go func() {
			defer w.wg.Done()
			w.flush()
		}()
	}
	return w
}

// add appends a record to the open segment, waiting while it is full, and
// returns the segment. It copies m.Data.
func (w *segWriter) add(ctx context.Context, m *Message, key streamSeq) (*segment, error) {
	w.mu.Lock()
	for w.cur.n >= segmentMaxRecords || len(w.cur.buf) >= segmentMaxBytes {
		space := w.space
		w.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		w.mu.Lock()
	}
	s := w.cur
	s.buf = AppendSegmentRecord(s.buf, SegmentRecord{ReceivedAt: m.ReceivedAt, Source: m.Source, Payload: m.Data})
	s.n++
	s.keys = append(s.keys, key)
	if s.n == 1 {
		w.signal()
	}
	if s.n >= segmentMaxRecords || len(s.buf) >= segmentMaxBytes {
		select {
		case w.full <- struct{}{}:
		default:
		}
	}
	w.mu.Unlock()
	return s, nil
}

func (w *segWriter) signal() {
	select {
	case w.kick <- struct{}{}:
	default: // a flusher will look anyway
	}
}

// flush takes the open segment whenever there is one and writes it, until
// stop is closed and no segment is open.
func (w *segWriter) flush() {
	var linger *time.Timer
	for {
		select {
		case <-w.kick:
		case <-w.stop:
			w.mu.Lock()
			open := w.cur.n > 0
			w.mu.Unlock()
			if !open {
				return
			}
		}
		if d := w.l.opts.SegmentLinger; d > 0 {
			// Let the segment gather more batches, unless it is full.
			if linger == nil {
				linger = time.NewTimer(d)
			} else {
				linger.Reset(d)
			}
			select {
			case <-linger.C:
			case <-w.full:
				linger.Stop()
			case <-w.stop:
				linger.Stop()
			}
		}
		w.mu.Lock()
		s := w.cur
		if s.n == 0 {
			w.mu.Unlock()
			continue
		}
		w.counter++
		s.name = SegmentName(w.l.opts.Clock.Now(), w.instance, w.counter)
		w.cur = newSegment()
		select { // a full signal for the segment just taken is stale
		case <-w.full:
		default:
		}
		close(w.space)
		w.space = make(chan struct{})
		w.mu.Unlock()

		s.err = w.l.writeSegment(s)
		buf := s.buf
		s.buf = nil
		if cap(buf) <= 2*segmentMaxBytes {
			segBufs.Put(&buf)
		}
		close(s.done)

		w.mu.Lock()
		if w.cur.n > 0 {
			w.signal()
		}
		w.mu.Unlock()
	}
}

// writeSegment writes s put-if-absent and returns once it is durable; then
// its batches count as landed for duplicate detection.
func (l *Lander) writeSegment(s *segment) error {
	// Not a caller's context: a segment serves many callers, and the lake
	// bounds its own retries.
	ctx := context.Background()
	err := l.write(ctx, s.name, s.buf)
	if errors.Is(err, lake.ErrExists) {
		// Names are unique to this Lander, so this is our own write, which
		// the lake reported as failed although it landed (a retried Azure
		// request), unless the content differs.
		if got, gerr := l.opts.Lake.Get(ctx, s.name); gerr == nil && bytes.Equal(got, s.buf) {
			err = nil
		}
	}
	if err != nil {
		return err
	}
	l.stats.Segments.Add(1)
	now := l.opts.Clock.Now().UnixMicro()
	l.seen.addAll(s.keys, now)
	l.maybeForget(now)
	return nil
}

// streamSeq names a batch: its stream (device and boot) and sequence number.
type streamSeq struct {
	device string
	boot   uint64
	seq    uint64
}

type stream struct {
	device string
	boot   uint64
}

// seenSet holds the batches this process landed durably, per stream as a
// few ranges of sequence numbers (a stream's batches arrive mostly in order,
// so usually one range): a redelivery to this process is recognised without
// asking the lake. A device starts a stream per boot; a stream nothing was
// landed in for Options.ForgetAfter is forgotten (a redelivery after that
// lands again, and the stages keep one copy). It also knows which batches
// are being landed, so a redelivery waits for the first copy rather than
// landing again.
type seenSet struct {
	mu      sync.Mutex
	m       map[stream]seenStream
	landing map[streamSeq]chan struct{} // closed when the first copy is settled
	swept   int64                       // when forget last ran, unix µs
}

type seenStream struct {
	seqs SeqRanges
	last int64 // unix µs of the last batch landed
}

// forget drops the streams nothing was landed in since cutoff (unix µs).
func (s *seenSet) forget(cutoff int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, st := range s.m {
		if st.last < cutoff {
			delete(s.m, k)
			n++
		}
	}
	return n
}

// streams returns how many streams the set holds.
func (s *seenSet) streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// claim reports whether k is landed (dup), or else returns a channel to
// wait on while another call lands it, or else (both zero) gives k to the
// caller, who must call settle(k) once its copy is durable or failed.
func (s *seenSet) claim(k streamSeq) (dup bool, wait <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[stream{k.device, k.boot}].seqs.Has(k.seq) {
		return true, nil
	}
	if ch, ok := s.landing[k]; ok {
		return false, ch
	}
	if s.landing == nil {
		s.landing = map[streamSeq]chan struct{}{}
	}
	s.landing[k] = make(chan struct{})
	return false, nil
}

// settle ends the claim on k.
func (s *seenSet) settle(k streamSeq) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.landing[k])
	delete(s.landing, k)
}

func (s *seenSet) addAll(keys []streamSeq, now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[stream]seenStream{}
	}
	for _, k := range keys {
		st := stream{k.device, k.boot}
		s.m[st] = seenStream{seqs: s.m[st].seqs.Add(k.seq), last: now}
	}
}

// maybeForget forgets the streams idle for ForgetAfter, at most every
// ForgetAfter/8.
func (l *Lander) maybeForget(now int64) {
	fa := l.opts.ForgetAfter.Microseconds()
	if fa <= 0 {
		return
	}
	l.seen.mu.Lock()
	due := now-l.seen.swept >= fa/8
	if due {
		l.seen.swept = now
	}
	l.seen.mu.Unlock()
	if due {
		if n := l.seen.forget(now - fa); n > 0 {
			l.stats.Forgotten.Add(uint64(n))
		}
	}
}

// Streams returns how many (device, boot) streams the Lander remembers the
// landed batches of.
func (l *Lander) Streams() int { return l.seen.streams() }
