package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/delta"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/follower"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Batch is what a mode hands to its handler: one complete version.
type Batch struct {
	Version uint64
	// Records are the batch's records (delta), or the record that
	// completed the snapshot (full). The first one's offset keys the
	// attempt counter; all of them are quarantined if the batch is poison.
	Records []delta.Record
	// Quarantine are problems found in the records (the proxy cannot use
	// an entity), written to the DLQ before the batch is handled.
	Quarantine []follower.Quarantine
	// What names the batch in a poison reason.
	What string
	// Entities and Hash are a decoded full snapshot and the hash its
	// header says (full mode).
	Entities map[string][]byte
	Hash     wire.Hash
}

// Handler applies a batch; an error it returns stops the loop unless the
// mode recognises it (*PoisonError, a hash mismatch).
type Handler func(ctx context.Context, b Batch) error

// Middleware wraps a handler (as watermill's router middleware does).
type Middleware func(Handler) Handler

// Chain wraps h in the middlewares, the first outermost.
func Chain(h Handler, ms ...Middleware) Handler {
	for i := len(ms) - 1; i >= 0; i-- {
		h = ms[i](h)
	}
	return h
}

// PanicError is a panic recovered while handling, with its stack.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Recover runs fn and turns a panic in it into a *PanicError.
func Recover(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return fn()
}

// Recoverer turns a panic of the handler (a snapshot decoder, a plugin's
// listener, the store) into a *PanicError; Run then goes back to the
// stored state and reads on after a pause.
func Recoverer(next Handler) Handler {
	return func(ctx context.Context, b Batch) error {
		return Recover(func() error { return next(ctx, b) })
	}
}

// PoisonError says a batch was not handled because it failed
// MaxAttempts times; its records are quarantined. The mode records the
// position past it.
type PoisonError struct{ Reason string }

func (e *PoisonError) Error() string { return "poison: " + e.Reason }

// Poison counts each attempt at a batch durably before handling it (begin:
// the store's BeginAttempt, keyed by the first record's offset), so that a
// batch that crashes the process counts too. When a batch comes up after
// max failed attempts, its records are quarantined with kind "poison"
// (lastPanic, when it says anything, ends the reason) and it returns a
// *PoisonError instead of handling it.
func Poison(begin func(first int64) (int, error), max int, quarantine func(context.Context, follower.Quarantine) error, lastPanic func() string, log *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, b Batch) error {
			first := b.Records[0]
			n, err := begin(first.Offset)
			if err != nil {
				return err
			}
			if n <= max {
				if n > 1 {
					log.Warn("trying a batch again after failed attempts", "version", b.Version, "offset", first.Offset, "attempt", n)
				}
				return next(ctx, b)
			}
			reason := fmt.Sprintf("%s failed %d attempts", b.What, n-1)
			if p := lastPanic(); p != "" {
				reason += "; last panic: " + p
			}
			for _, r := range b.Records {
				q := follower.Quarantine{Key: r.Key, Value: r.Value, Headers: r.Headers, Offset: r.Offset, Kind: wire.ReasonPoison, Detail: reason}
				if err := quarantine(ctx, q); err != nil {
					return err
				}
			}
			return &PoisonError{Reason: reason}
		}
	}
}

// Quarantining writes the batch's problem records to the DLQ before
// handling it; the batch is still applied whole (its hash covers them).
func Quarantining(quarantine func(context.Context, follower.Quarantine) error) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, b Batch) error {
			for _, q := range b.Quarantine {
				if err := quarantine(ctx, q); err != nil {
					return err
				}
			}
			return next(ctx, b)
		}
	}
}

// handler is apply behind the consumer's middlewares: recovery outermost,
// then the attempt count, then quarantine.
func (c *Consumer) handler(apply Handler) Handler {
	return Chain(apply,
		Recoverer,
		Poison(c.store.BeginAttempt, MaxAttempts, c.quarantine, func() string { return load(&c.lastPanic) }, c.log),
		Quarantining(c.quarantine),
	)
}
