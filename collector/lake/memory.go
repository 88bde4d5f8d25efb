package lake

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Memory is a Lake held in memory. It is for fuzzing and unit tests, where
// a directory or a container per input is too slow; it keeps nothing across
// restarts. Names are checked like the other backends' and content is copied
// in and out, so callers cannot alias stored objects.
type Memory struct {
	mu   sync.Mutex
	objs map[string]memObject
	now  func() time.Time
}

type memObject struct {
	data []byte
	mod  time.Time
}

var _ Lake = (*Memory)(nil)

// NewMemory returns an empty in-memory lake.
func NewMemory() *Memory { return &Memory{objs: map[string]memObject{}, now: time.Now} }

// Put implements Lake.
func (m *Memory) Put(_ context.Context, name string, data []byte) error {
	if err := CheckName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[name] = memObject{data: append([]byte(nil), data...), mod: m.now()}
	return nil
}

// PutIfAbsent implements Lake.
func (m *Memory) PutIfAbsent(_ context.Context, name string, data []byte) error {
	if err := CheckName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[name]; ok {
		return fmt.Errorf("writing %s: %w", name, ErrExists)
	}
	m.objs[name] = memObject{data: append([]byte(nil), data...), mod: m.now()}
	return nil
}

// Get implements Lake.
func (m *Memory) Get(_ context.Context, name string) ([]byte, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objs[name]
	if !ok {
		return nil, fmt.Errorf("reading %s: %w", name, ErrNotFound)
	}
	return append([]byte(nil), o.data...), nil
}

// List implements Lake.
func (m *Memory) List(_ context.Context, prefix string) ([]Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Object
	for n, o := range m.objs {
		if strings.HasPrefix(n, prefix) {
			out = append(out, Object{Name: n, Size: int64(len(o.data)), ModTime: o.mod})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Delete implements Lake.
func (m *Memory) Delete(_ context.Context, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, name)
	return nil
}
