// Package lake stores the collector's objects: a bucket of named blobs that is
// a local directory by default, or an Azure Blob / ADLS Gen2 container.
//
// Names are slash-separated relative paths ("bronze/_delta_log/00000000000000000000.json").
// Callers validate any part of a name that came from the network before it
// reaches a Lake.
package lake

import (
	"context"
	"errors"
	"time"
)

// Errors returned by every Lake implementation.
var (
	// ErrExists is returned by PutIfAbsent when the object already exists.
	ErrExists = errors.New("object already exists")
	// ErrNotFound is returned by Get when the object does not exist.
	ErrNotFound = errors.New("object not found")
	// ErrBadName is returned for a name that is empty, absolute, or has "." or ".." parts.
	ErrBadName = errors.New("bad object name")
)

// Object describes a stored object.
type Object struct {
	Name    string
	Size    int64
	ModTime time.Time
}

// Lake is the storage the stages need: put, put-if-absent, get, list, delete.
type Lake interface {
	// Put writes data under name, replacing any existing object. The write is
	// atomic: readers see the old or the new content, never a part.
	Put(ctx context.Context, name string, data []byte) error
	// PutIfAbsent writes data under name only if no object has that name;
	// otherwise it returns an error wrapping ErrExists. Atomic and durable on return.
	PutIfAbsent(ctx context.Context, name string, data []byte) error
	// Get returns the content of name, or an error wrapping ErrNotFound.
	Get(ctx context.Context, name string) ([]byte, error)
	// List returns the objects whose names start with prefix, sorted by name.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes name; deleting a missing object is not an error.
	Delete(ctx context.Context, name string) error
}
