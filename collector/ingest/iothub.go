package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pilake/pilake/agent/redact"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/schema"
)

// RoutingHandler lands one record of a routing file; nil means it is durable
// (landed or quarantined).
type RoutingHandler func(ctx context.Context, file string, rec RoutingRecord) error

// RoutingOptions configure a Routing ingest.
type RoutingOptions struct {
	// Files is where IoT Hub's routing endpoint writes (a Blob container,
	// ADLS Gen2 filesystem, or a local directory). Required.
	Files lake.Lake
	// Prefix selects the routing files, e.g. "myhub/" for IoT Hub's default
	// {iothub}/{partition}/{YYYY}/{MM}/{DD}/{HH}/{mm} names.
	Prefix string
	// State keeps the checkpoint (the collector's lake). Required.
	State lake.Lake
	// CheckpointName defaults to _checkpoints/iothub/{prefix with '/' → '_'}.json.
	CheckpointName string
	// PollInterval is the time between listings [10s].
	PollInterval time.Duration
	// Handler lands a record; required. A record with Err set is passed too:
	// the handler quarantines it. It is called for up to MaxConcurrent
	// records of a file at once, each with its own copy of the body.
	Handler RoutingHandler
	// MaxConcurrent bounds the records of a file being landed at once [256].
	// Landing gathers concurrent batches into one segment (one object and
	// one sync); one record at a time would pay a segment, and the segment
	// writer's linger, per record.
	MaxConcurrent int
	// Quarantine sets aside a whole file that cannot be read; required.
	Quarantine func(ctx context.Context, file string, data []byte, reason string) error
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Limits bound what one file may cost (size, blocks, maps).
	Limits RoutingLimits
}

// Routing discovers new IoT Hub routing files incrementally, like Databricks
// Auto Loader: each listing is compared with a checkpoint of the files
// already processed (name and size), every record of a new file is landed,
// and only then is the file added to the checkpoint. A crash between landing
// and checkpointing processes the file again: the second pass is recognised
// as duplicates (by the Lander, or by bronze, which keeps each device boot's
// sequence numbers), so each batch is in bronze exactly once.
// A file that changed size since it was processed is processed again.
type Routing struct {
	opts RoutingOptions
	log  *slog.Logger
	cp   routingCheckpoint

	files, records, quarantined atomic.Uint64
	limited                     atomic.Uint64 // files quarantined for a RoutingLimits bound
}

type routingCheckpoint struct {
	Version int              `json:"version"`
	Prefix  string           `json:"prefix"`
	Files   map[string]int64 `json:"files"` // name → size when processed
}

// NewRouting loads the checkpoint.
func NewRouting(ctx context.Context, opts RoutingOptions) (*Routing, error) {
	if opts.Files == nil || opts.State == nil || opts.Handler == nil || opts.Quarantine == nil {
		return nil, errors.New("iothub ingest: Files, State, Handler and Quarantine are required")
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 256
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CheckpointName == "" {
		p := strings.Trim(opts.Prefix, "/")
		if p == "" {
			p = "_all"
		}
		opts.CheckpointName = schema.Checkpoints + "iothub/" + strings.ReplaceAll(p, "/", "_") + ".json"
	}
	r := &Routing{opts: opts, log: opts.Logger.With(slog.String("component", "iothub-ingest"), slog.String("prefix", opts.Prefix))}
	data, err := opts.State.Get(ctx, opts.CheckpointName)
	switch {
	case errors.Is(err, lake.ErrNotFound):
		r.cp = routingCheckpoint{Version: 1, Prefix: opts.Prefix, Files: map[string]int64{}}
	case err != nil:
		return nil, fmt.Errorf("iothub ingest: reading checkpoint: %w", err)
	default:
		if err := json.Unmarshal(data, &r.cp); err != nil || r.cp.Version != 1 {
			return nil, fmt.Errorf("iothub ingest: checkpoint %s is damaged (version %d): %v", opts.CheckpointName, r.cp.Version, err)
		}
		if r.cp.Files == nil {
			r.cp.Files = map[string]int64{}
		}
	}
	return r, nil
}

// Stats returns files processed, records handled and files quarantined.
func (r *Routing) Stats() (files, records, quarantined uint64) {
	return r.files.Load(), r.records.Load(), r.quarantined.Load()
}

// Limited returns the number of files quarantined for a RoutingLimits bound.
func (r *Routing) Limited() uint64 { return r.limited.Load() }

// Poll lists the prefix once and processes every file not yet processed, in
// name order (time order for IoT Hub's names). It returns how many files it
// processed. On an error the files before it stay processed and the rest are
// taken up by the next Poll.
func (r *Routing) Poll(ctx context.Context) (int, error) {
	objs, err := r.opts.Files.List(ctx, r.opts.Prefix)
	if err != nil {
		return 0, fmt.Errorf("listing routing files: %w", err)
	}
	n := 0
	for _, o := range objs {
		if size, ok := r.cp.Files[o.Name]; ok && size == o.Size {
			continue
		}
		if err := r.process(ctx, o); err != nil {
			return n, err
		}
		r.cp.Files[o.Name] = o.Size
		if err := r.saveCheckpoint(ctx); err != nil {
			delete(r.cp.Files, o.Name)
			return n, err
		}
		r.files.Add(1)
		n++
	}
	return n, nil
}

func (r *Routing) process(ctx context.Context, o lake.Object) error {
	lim := r.opts.Limits.withDefaults()
	if o.Size > lim.MaxFileBytes {
		// Not read at all: set aside by name, with the reason.
		reason := fmt.Sprintf("routing file of %d bytes is larger than the limit of %d; not read", o.Size, lim.MaxFileBytes)
		r.log.Warn("routing file too large; quarantined unread", "file", redact.Clean(o.Name, 200), "bytes", o.Size, "max", lim.MaxFileBytes)
		if qerr := r.opts.Quarantine(ctx, o.Name, nil, reason); qerr != nil {
			return fmt.Errorf("quarantining routing file %s: %w", o.Name, qerr)
		}
		r.quarantined.Add(1)
		r.limited.Add(1)
		return nil
	}
	data, err := r.opts.Files.Get(ctx, o.Name)
	if err != nil {
		return fmt.Errorf("reading routing file: %w", err)
	}
	// Records are landed concurrently (up to MaxConcurrent). After a
	// failure no new record starts, and the file is processed again by the
	// next Poll; the records in flight finish undisturbed (a record given up
	// half-way would be landed but reach bronze late).
	sem := make(chan struct{}, r.opts.MaxConcurrent)
	var wg sync.WaitGroup
	var records atomic.Int64
	var failed atomic.Pointer[error]
	err = ParseRoutingFileLimits(data, lim, func(rec RoutingRecord) error {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		if ferr := failed.Load(); ferr != nil {
			<-sem
			return *ferr
		}
		rec.Body = bytes.Clone(rec.Body) // the parser may reuse its buffers
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := r.opts.Handler(ctx, o.Name, rec); err != nil {
				err = fmt.Errorf("landing record %d of %s: %w", rec.Index, o.Name, err)
				failed.CompareAndSwap(nil, &err)
				return
			}
			records.Add(1)
			r.records.Add(1)
		}()
		return nil
	})
	wg.Wait()
	if ferr := failed.Load(); ferr != nil {
		return *ferr // not processed
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, ErrRoutingFile) {
		// The records before the damage are landed; set the file aside.
		r.log.Warn("routing file unreadable; quarantined", "file", redact.Clean(o.Name, 200), "records_landed", records.Load(), "err", err)
		if qerr := r.opts.Quarantine(ctx, o.Name, data, err.Error()); qerr != nil {
			return fmt.Errorf("quarantining routing file %s: %w", o.Name, qerr)
		}
		r.quarantined.Add(1)
		if errors.Is(err, ErrRoutingLimit) {
			r.limited.Add(1)
		}
		return nil
	}
	if err != nil {
		return err
	}
	r.log.Debug("routing file processed", "file", o.Name, "records", records.Load())
	return nil
}

func (r *Routing) saveCheckpoint(ctx context.Context) error {
	data, err := json.Marshal(r.cp)
	if err != nil {
		return fmt.Errorf("encoding iothub checkpoint: %w", err)
	}
	if err := r.opts.State.Put(ctx, r.opts.CheckpointName, data); err != nil {
		return fmt.Errorf("writing iothub checkpoint: %w", err)
	}
	return nil
}

// Run polls every PollInterval until ctx ends. Errors are logged and the
// poll retried; a poll in progress when ctx ends stops at the next record
// (nothing unlanded is checkpointed).
func (r *Routing) Run(ctx context.Context) error {
	t := time.NewTicker(r.opts.PollInterval)
	defer t.Stop()
	for {
		if n, err := r.Poll(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("routing poll failed; retrying at the next poll", "err", err)
		} else if n > 0 {
			r.log.Info("routing files processed", "files", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
