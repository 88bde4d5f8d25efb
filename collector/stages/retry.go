package stages

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/internal/backoff"
)

// retryCap is the longest wait between attempts: Options.RetryBackoff
// doubles up to it.
const retryCap = 10 * time.Second

// startAttempts bounds the attempts of recovery and the start-up scan (about
// 13 s of lake outage with the default RetryBackoff); an epoch's commit is
// retried until it succeeds, fails permanently or the shutdown clock ends.
const startAttempts = 8

// permanent marks errors that retrying with backoff cannot fix. It is the
// one predicate for every retry in the stages (recovery, the start-up scan,
// commits): retry returns them at once. Of those, the refused ones (a table
// asks what pilake cannot honour) are tried again by the caller after
// RefusedRetry; the others stop Run.
func permanent(err error) bool {
	return errors.Is(err, delta.ErrConflict) || refused(err) ||
		errors.Is(err, delta.ErrCorruptLog) || errors.Is(err, errSettings) || errors.Is(err, errState)
}

// retry runs fn until it succeeds, fails permanently, ctx ends or, if
// attempts > 0, it failed that many times, waiting between attempts from
// first doubling up to retryCap. It calls failed (if set) after each failure
// and returns fn's last error. The stages retry lake operations in this one
// place; what fn resumes from is fn's (an epoch's commit resumes at the step
// that failed).
func retry(ctx context.Context, log *slog.Logger, first time.Duration, what string, attempts int, failed func(error),
	fn func(context.Context) error, attrs ...any) error {
	b := backoff.Backoff{Min: first, Max: retryCap}
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if failed != nil {
			failed(err)
		}
		if permanent(err) || attempt == attempts || ctx.Err() != nil {
			return err
		}
		d := b.Next()
		log.Warn(what+" failed; retrying", append(attrs, slog.Any("err", err), slog.Int("attempt", attempt), slog.Duration("backoff", d))...)
		if backoff.Wait(ctx, d) != nil {
			return err
		}
	}
}

// retry is retry with the pipeline's logger and RetryBackoff, for startAttempts.
func (p *Pipeline) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	return retry(ctx, p.log, p.opts.RetryBackoff, what, startAttempts, nil, fn)
}
