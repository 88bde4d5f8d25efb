package delta_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/pilake/pilake/collector/lake"
)

// memLake is an in-memory lake for fuzzing (a temporary directory per input
// is too slow). Real-lake behaviour is covered by the Local and Azurite tests.
type memLake struct {
	mu   sync.Mutex
	objs map[string][]byte
}

var _ lake.Lake = (*memLake)(nil)

func newMemLake() *memLake { return &memLake{objs: map[string][]byte{}} }

func (m *memLake) Put(_ context.Context, name string, data []byte) error {
	if err := lake.CheckName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objs[name] = append([]byte(nil), data...)
	return nil
}

func (m *memLake) PutIfAbsent(_ context.Context, name string, data []byte) error {
	if err := lake.CheckName(name); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.objs[name]; ok {
		return fmt.Errorf("writing %s: %w", name, lake.ErrExists)
	}
	m.objs[name] = append([]byte(nil), data...)
	return nil
}

func (m *memLake) Get(_ context.Context, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objs[name]
	if !ok {
		return nil, fmt.Errorf("reading %s: %w", name, lake.ErrNotFound)
	}
	return b, nil
}

func (m *memLake) List(_ context.Context, prefix string) ([]lake.Object, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []lake.Object
	for n, b := range m.objs {
		if strings.HasPrefix(n, prefix) {
			out = append(out, lake.Object{Name: n, Size: int64(len(b)), ModTime: time.Unix(0, 0)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (m *memLake) Delete(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objs, name)
	return nil
}
