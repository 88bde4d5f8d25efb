package broker

import (
	"net"
	"sync"
	"time"
)

// ackListener wraps each accepted connection in an ackConn.
type ackListener struct{ net.Listener }

func (l ackListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &ackConn{Conn: c}, nil
}

// ackConn holds back what is written while its reader is busy, between a
// Read returning and the next one, and sends it at that next Read, before
// waiting for more input. mochi reads a client's packets through a bufio
// buffer and writes each PUBACK (after landing) from the same goroutine, so
// the PUBACKs of the packets one read brought in leave in one write: one
// system call and one TCP segment instead of one each (on loopback the
// sender's write also pays for the receiving side, ~10 µs).
//
// Nothing waits longer than the reader's current work: a write made while
// a Read is waiting for input (a delivery to an idle subscriber) goes out at
// once, and the reader calls Read again as soon as it has handled what it
// read. A write error surfaces from the next Read (mochi then drops the
// client, which resends what was not acknowledged) or Write.
type ackConn struct {
	net.Conn
	mu      sync.Mutex // serialises writes; guards the fields below
	reading bool       // a Read is waiting for input: writes go straight out
	pending []byte
}

// maxPending bounds the bytes held back; a bigger write flushes them.
const maxPending = 16 << 10

// closeFlushTimeout bounds how long Close tries to send what is held back.
const closeFlushTimeout = 100 * time.Millisecond

// flush writes pending out; c.mu is held.
func (c *ackConn) flush() error {
	if len(c.pending) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.pending)
	if cap(c.pending) > 4<<10 {
		c.pending = nil // a burst of deliveries; do not keep its buffer
	} else {
		c.pending = c.pending[:0]
	}
	return err
}

func (c *ackConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if err := c.flush(); err != nil {
		c.mu.Unlock()
		return 0, err
	}
	c.reading = true
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.reading = false
	c.mu.Unlock()
	return n, err
}

func (c *ackConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.reading && len(c.pending)+len(p) <= maxPending {
		c.pending = append(c.pending, p...)
		return len(p), nil
	}
	if err := c.flush(); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// Close sends what is held back (briefly: the peer may not be reading),
// unless a write is stuck in progress, and closes the connection.
func (c *ackConn) Close() error {
	if c.mu.TryLock() {
		if len(c.pending) > 0 {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlushTimeout))
			_ = c.flush()
		}
		c.mu.Unlock()
	}
	return c.Conn.Close()
}
