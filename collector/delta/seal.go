package delta

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pilake/pilake/collector/lake"
)

// Shedding statistics (shed.go) leaves a writer about 0.7 KB per live file
// it keeps in memory, and a table that keeps its history has ever more of
// them. A sidecar of a closed group whose files are all shed (compaction
// wrote them; they will never change again) is sealed: the writer drops
// its files from memory altogether and keeps of the sidecar only its
// number of files, their bytes (already in liveBytes) and an 8-byte hash
// of each file's key, so its memory no longer grows with the history (8 B
// a file instead of ~700). A sealed sidecar is read back into memory
// (unsealed) only when something needs its files:
//   - an add or remove, by another writer (or this one), of a file whose
//     key hash it holds: the file is brought back before the action is
//     applied, so the state stays exact (a hash collision only costs a read);
//   - a V2 checkpoint that must write its group again: its 8-day block
//     joins a 64- or 512-day block, or a file of its group is in memory;
//   - a classic checkpoint, which names no sidecar (every sealed sidecar);
// and vacuum streams sealed sidecars' paths into its live set. Files and
// All of a Table's snapshot do not give sealed files; NumFiles counts them.

// sealedRef is what a lean snapshot keeps of a sealed sidecar.
type sealedRef struct {
	group string   // its TagSidecarGroup
	n     int      // live files it holds
	keys  []uint64 // sorted keyHash of each file's key
}

// keyHash is the 64-bit FNV-1a hash of a file key (hash/fnv's, without
// its allocations: it runs for every add and remove a commit applies).
func keyHash(k string) uint64 {
	const offset64, prime64 = 14695981039346656037, 1099511628211
	h := uint64(offset64)
	for i := 0; i < len(k); i++ {
		h ^= uint64(k[i])
		h *= prime64
	}
	return h
}

// seal seals every sidecar of a closed group whose files are all in memory
// shed (called after shedCold).
func (s *Snapshot) seal() {
	if !s.lean || s.filesOnly || s.checkOnly {
		return
	}
	members := map[string][]string{}
	for k, name := range s.origin {
		r, ok := s.sidecars[name]
		if !ok || r.removes || !closedGroup(r.action.Tags[TagSidecarGroup]) {
			continue
		}
		members[name] = append(members[name], k)
	}
	sealedNow := 0
	for name, keys := range members {
		r := s.sidecars[name]
		if int64(len(keys)) != r.adds {
			continue
		}
		hashes := make([]uint64, 0, len(keys))
		sealable := true
		for _, k := range keys {
			f, ok := s.files[k]
			if !ok || !f.shed {
				sealable = false
				break
			}
			hashes = append(hashes, keyHash(k))
		}
		if !sealable {
			continue
		}
		for _, k := range keys {
			delete(s.files, k)
			delete(s.origin, k)
		}
		s.shed -= len(keys)
		slices.Sort(hashes)
		if s.sealed == nil {
			s.sealed = map[string]sealedRef{}
		}
		s.sealed[name] = sealedRef{group: r.action.Tags[TagSidecarGroup], n: len(keys), keys: hashes}
		s.sealedN += len(keys)
		sealedNow += len(keys)
	}
	if sealedNow > 0 {
		// A Go map keeps the buckets of its largest size: after a block
		// was read back (a 64-day block holds months of files), the maps
		// are rebuilt at their size now.
		s.files = resized(s.files)
		s.origin = resized(s.origin)
	}
}

// resized returns a copy of m allocated for its current size.
func resized[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// sealedHolding returns the sealed sidecars that may hold file key k.
func (s *Snapshot) sealedHolding(k string) []string {
	if len(s.sealed) == 0 {
		return nil
	}
	if _, ok := s.files[k]; ok {
		return nil
	}
	h := keyHash(k)
	var out []string
	for name, r := range s.sealed {
		if _, ok := slices.BinarySearch(r.keys, h); ok {
			out = append(out, name)
		}
	}
	return out
}

// unsealFor unseals the sealed sidecars that may hold a file that actions
// add or remove, so that applying them finds the file.
func (s *Snapshot) unsealFor(ctx context.Context, l lake.Lake, actions []Action) error {
	if len(s.sealed) == 0 {
		return nil
	}
	for _, a := range actions {
		var k string
		var err error
		switch {
		case a.Add != nil:
			k, err = fileKey(a.Add.Path, a.Add.DeletionVector)
		case a.Remove != nil:
			k, err = fileKey(a.Remove.Path, a.Remove.DeletionVector)
		default:
			continue
		}
		if err != nil {
			return err
		}
		for _, name := range s.sealedHolding(k) {
			if err := s.unseal(ctx, l, name); err != nil {
				return err
			}
		}
	}
	return nil
}

// unseal reads sealed sidecar name's files back into memory, shed (their
// statistics stay in the sidecar, as for any shed file).
func (s *Snapshot) unseal(ctx context.Context, l lake.Lake, name string) error {
	r, ok := s.sealed[name]
	if !ok {
		return nil
	}
	var files []AddFile
	var keys []string
	err := eachCheckpointAction(ctx, l, []string{name}, func(a Action) error {
		if a.Add == nil {
			return nil
		}
		k, err := fileKey(a.Add.Path, a.Add.DeletionVector)
		if err != nil {
			return err
		}
		f := *a.Add
		f.Stats, f.shed = "", true
		files = append(files, f)
		keys = append(keys, k)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading back sealed sidecar: %w", err)
	}
	if len(files) != r.n {
		return fmt.Errorf("%w: sidecar %s holds %d live files, not the %d it held", ErrCorruptLog, name, len(files), r.n)
	}
	for i, k := range keys {
		s.files[k] = files[i]
		s.origin[k] = name
	}
	s.shed += len(files)
	s.sealedN -= r.n
	delete(s.sealed, name)
	return nil
}

// unsealAll unseals every sealed sidecar.
func (s *Snapshot) unsealAll(ctx context.Context, l lake.Lake) error {
	for _, name := range slices.Sorted(maps.Keys(s.sealed)) {
		if err := s.unseal(ctx, l, name); err != nil {
			return err
		}
	}
	return nil
}

// blockGroup is the group, at now, of the files of a closed group g (an
// n-day block "Nd-B"): blocks nest, so all of a block's files move
// together into the larger block once that one is closed.
func blockGroup(g string, now time.Time) (string, bool) {
	w, b, ok := strings.Cut(g, "d-")
	if !ok {
		return "", false
	}
	wn, err1 := strconv.ParseInt(w, 10, 64)
	bn, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil || wn <= 0 {
		return "", false
	}
	const dayMS = 24 * 60 * 60 * 1000
	return sidecarGroup(wn*bn*dayMS, now), true
}

// sealedNames returns the names of the sealed sidecars, sorted.
func (s *Snapshot) sealedNames() []string { return slices.Sorted(maps.Keys(s.sealed)) }
