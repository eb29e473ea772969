package consumer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/delta"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/follower"
)

func TestChainOrder(t *testing.T) {
	var got []string
	mw := func(name string) Middleware {
		return func(next Handler) Handler {
			return func(ctx context.Context, b Batch) error {
				got = append(got, name)
				return next(ctx, b)
			}
		}
	}
	h := Chain(func(context.Context, Batch) error { got = append(got, "handler"); return nil }, mw("outer"), mw("inner"))
	if err := h(t.Context(), Batch{}); err != nil || !slices.Equal(got, []string{"outer", "inner", "handler"}) {
		t.Fatalf("order %v, err %v", got, err)
	}
}

func TestRecoverer(t *testing.T) {
	boom := Recoverer(func(context.Context, Batch) error { panic("listener exploded") })
	var pe *PanicError
	if err := boom(t.Context(), Batch{}); !errors.As(err, &pe) || pe.Value != "listener exploded" || len(pe.Stack) == 0 {
		t.Fatalf("err %v, want a *PanicError with its value and stack", err)
	}
	want := errors.New("store failed")
	if err := Recoverer(func(context.Context, Batch) error { return want })(t.Context(), Batch{}); err != want {
		t.Fatalf("err %v, want the handler's error unchanged", err)
	}
}

func TestPoison(t *testing.T) {
	batch := Batch{Version: 2, What: "batch of version 2 (offsets 1-2)", Records: []delta.Record{
		{Key: "services/b", Value: []byte(`{"id":"b"}`), Offset: 1},
		{Key: "routes/r", Value: []byte(`{"id":"r"}`), Offset: 2},
	}}
	cases := []struct {
		name      string
		attempt   int // what BeginAttempt answers
		lastPanic string
		handled   bool
		poison    string // substring of the reason ("" = not poison)
	}{
		{"first attempt is handled", 1, "", true, ""},
		{"third attempt is handled", 3, "boom", true, ""},
		{"fourth attempt is poison", 4, "boom", false, "batch of version 2 (offsets 1-2) failed 3 attempts; last panic: boom"},
		{"poison without a recorded panic (the process crashed)", 4, "", false, "failed 3 attempts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var keyed []int64
			var dlq []follower.Quarantine
			handled := false
			h := Poison(
				func(first int64) (int, error) { keyed = append(keyed, first); return c.attempt, nil },
				MaxAttempts,
				func(_ context.Context, q follower.Quarantine) error { dlq = append(dlq, q); return nil },
				func() string { return c.lastPanic },
				slog.New(slog.NewTextHandler(io.Discard, nil)),
			)(func(context.Context, Batch) error { handled = true; return nil })
			err := h(t.Context(), batch)
			if !slices.Equal(keyed, []int64{1}) || handled != c.handled {
				t.Fatalf("attempt keyed by %v, handled %v; want [1], %v", keyed, handled, c.handled)
			}
			var pe *PoisonError
			if c.poison == "" {
				if err != nil || len(dlq) != 0 {
					t.Fatalf("err %v, quarantined %d", err, len(dlq))
				}
				return
			}
			if !errors.As(err, &pe) || !strings.Contains(pe.Reason, c.poison) {
				t.Fatalf("err %v, want a *PoisonError saying %q", err, c.poison)
			}
			if c.lastPanic == "" && strings.Contains(pe.Reason, "last panic") {
				t.Fatalf("reason %q names a panic that was not recorded", pe.Reason)
			}
			if len(dlq) != 2 || dlq[0].Offset != 1 || dlq[1].Offset != 2 || dlq[0].Kind != "poison" || dlq[0].Detail != pe.Reason || string(dlq[1].Value) != `{"id":"r"}` {
				t.Fatalf("quarantined %+v, want both records with kind poison and the reason", dlq)
			}
		})
	}
	t.Run("a failing attempt counter stops before handling", func(t *testing.T) {
		want := errors.New("disk full")
		h := Poison(func(int64) (int, error) { return 0, want }, MaxAttempts, nil, func() string { return "" }, slog.New(slog.NewTextHandler(io.Discard, nil)))(
			func(context.Context, Batch) error { t.Fatal("handled"); return nil })
		if err := h(t.Context(), batch); err != want {
			t.Fatalf("err %v", err)
		}
	})
}

func TestQuarantining(t *testing.T) {
	var order []string
	q := Quarantining(func(_ context.Context, q follower.Quarantine) error { order = append(order, q.Kind); return nil })
	h := q(func(context.Context, Batch) error { order = append(order, "applied"); return nil })
	if err := h(t.Context(), Batch{Quarantine: []follower.Quarantine{{Kind: "entity"}, {Kind: "type"}}}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(order, []string{"entity", "type", "applied"}) {
		t.Fatalf("order %v: the evidence is written first, then the batch applies whole", order)
	}
}
