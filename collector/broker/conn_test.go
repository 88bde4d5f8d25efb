package broker

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// recConn is a net.Conn whose Reads take from in (EOF once it is closed)
// and which records each Write (one system call each on a real socket).
type recConn struct {
	net.Conn // nil: only what ackConn uses is implemented
	in       chan []byte
	entered  chan struct{} // if set, told when a Read starts waiting on in
	mu       sync.Mutex
	writes   [][]byte
	closed   bool
	failW    error
}

func (r *recConn) Read(p []byte) (int, error) {
	if r.entered != nil {
		r.entered <- struct{}{}
	}
	b, ok := <-r.in
	if !ok {
		return 0, net.ErrClosed
	}
	return copy(p, b), nil
}

func (r *recConn) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failW != nil {
		return 0, r.failW
	}
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func (r *recConn) SetWriteDeadline(time.Time) error { return nil }

func (r *recConn) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	return nil
}

func (r *recConn) sent() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s []string
	for _, w := range r.writes {
		s = append(s, string(w))
	}
	return s
}

func eq(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// What the reader writes after reading (PUBACKs) leaves in one write, at
// its next Read, in order.
func TestAckConnCoalescesWritesUntilNextRead(t *testing.T) {
	r := &recConn{in: make(chan []byte, 4)}
	c := &ackConn{Conn: r}
	r.in <- []byte("3 publishes")
	buf := make([]byte, 64)
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	for _, ack := range []string{"ack1", "ack2", "ack3"} {
		if n, err := c.Write([]byte(ack)); n != len(ack) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", ack, n, err)
		}
	}
	if got := r.sent(); len(got) != 0 {
		t.Fatalf("sent %q while the reader was busy, want nothing yet", got)
	}
	r.in <- []byte("more")
	if _, err := c.Read(buf); err != nil {
		t.Fatal(err)
	}
	if got, want := r.sent(), []string{"ack1ack2ack3"}; !eq(got, want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
}

// A write while the reader waits for input (a delivery to an idle
// subscriber) is not held back.
func TestAckConnWritesAtOnceWhileReaderWaits(t *testing.T) {
	r := &recConn{in: make(chan []byte), entered: make(chan struct{})}
	c := &ackConn{Conn: r}
	readDone := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 64))
		readDone <- err
	}()
	<-r.entered // the Read waits in the connection
	if _, err := c.Write([]byte("delivery")); err != nil {
		t.Fatal(err)
	}
	if got, want := r.sent(), []string{"delivery"}; !eq(got, want) {
		t.Fatalf("sent %q, want %q at once", got, want)
	}
	r.in <- []byte("x")
	if err := <-readDone; err != nil {
		t.Fatal(err)
	}
}

// A write too big to hold back goes out after what was held, in order; Close
// sends what is still held; a failed flush fails the next Read.
func TestAckConnOrderCloseAndErrors(t *testing.T) {
	r := &recConn{in: make(chan []byte, 1)}
	c := &ackConn{Conn: r}
	if _, err := c.Write([]byte("connack")); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("d"), maxPending)
	if _, err := c.Write(big); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("puback")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if got, want := r.sent(), []string{"connack", string(big), "puback"}; !eq(got, want) {
		t.Fatalf("sent %d writes, want connack, the big one and puback in order", len(got))
	}
	if !r.closed {
		t.Fatal("underlying connection not closed")
	}

	boom := errors.New("connection reset")
	r2 := &recConn{in: make(chan []byte, 1), failW: boom}
	c2 := &ackConn{Conn: r2}
	if _, err := c2.Write([]byte("puback")); err != nil {
		t.Fatalf("held-back write failed early: %v", err)
	}
	r2.in <- []byte("next")
	if _, err := c2.Read(make([]byte, 8)); !errors.Is(err, boom) {
		t.Fatalf("Read after a failed flush: %v, want %v", err, boom)
	}
}
