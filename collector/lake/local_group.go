package lake

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// GroupWriter is implemented by lakes where durability can be bought for many
// writes at once (group commit): WriteIfAbsent is PutIfAbsent minus the
// durability, and Sync makes every write that returned before it was called
// durable. On a local disk an fsync costs milliseconds, so landing thousands
// of small objects a second needs this.
type GroupWriter interface {
	// WriteIfAbsent writes data under name if no object has that name
	// (else an error wrapping ErrExists). The object appears whole or not at
	// all, but is durable only after a later Sync returns.
	WriteIfAbsent(ctx context.Context, name string, data []byte) error
	// Sync makes every write that completed before the call durable.
	Sync(ctx context.Context) error
}

var _ GroupWriter = (*Local)(nil)

// WriteIfAbsent implements GroupWriter: a temporary file, not fsynced,
// hard-linked to name (link(2) fails if name exists).
func (l *Local) WriteIfAbsent(ctx context.Context, name string, data []byte) error {
	p, err := l.path(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	f, err := os.CreateTemp(dir, ".tmp-*")
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(dir, 0o755); err == nil {
			f, err = os.CreateTemp(dir, ".tmp-*")
		}
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := os.Link(tmp, p); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("writing %s: %w", name, ErrExists)
		}
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// Sync implements GroupWriter: syncfs(2) on the lake's file system where
// available (Linux), else sync(2).
func (l *Local) Sync(ctx context.Context) error {
	if err := syncFS(l.root); err != nil {
		return fmt.Errorf("syncing lake %s: %w", l.root, err)
	}
	return nil
}
