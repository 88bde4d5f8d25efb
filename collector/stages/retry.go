package stages

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pilake/pilake/collector/delta"
)

// permanent marks errors that retrying cannot fix.
func permanent(err error) bool {
	return errors.Is(err, delta.ErrConflict) || errors.Is(err, delta.ErrUnsupported) ||
		errors.Is(err, delta.ErrCorruptLog) || errors.Is(err, errSettings) || errors.Is(err, errState)
}

// retry runs fn until it succeeds, fails permanently, fails 8 times (with
// backoff from RetryBackoff to 5 s: about 15 s of lake outage), or ctx ends.
func (p *Pipeline) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	backoff := p.opts.RetryBackoff
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil || permanent(err) || attempt == 8 || ctx.Err() != nil {
			return err
		}
		p.log.Warn(what+" failed; retrying", slog.Any("error", err), slog.Int("attempt", attempt), slog.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
