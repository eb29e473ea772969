package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

func TestChunksFitOneRequest(t *testing.T) {
	var msgs []kafka.Message
	for i := range 1200 {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprint("k", i)), Value: []byte(strings.Repeat("v", (i*7919)%9000))})
	}
	msgs = append(msgs, kafka.Message{Key: []byte("big"), Value: make([]byte, 50_000)})
	for _, lim := range []struct{ count, bytes int }{{500, wire.MaxProduceBytes}, {7, 20_000}, {1000, 40_000}} {
		cs := chunks(msgs, lim.count, lim.bytes)
		var all []kafka.Message
		for i, c := range cs {
			size := 0
			for _, m := range c {
				size += wire.ProduceBytes(m)
			}
			if len(c) == 0 || len(c) > lim.count || (size > lim.bytes && len(c) > 1) {
				t.Fatalf("limits %+v: chunk %d has %d messages, %d bytes", lim, i, len(c), size)
			}
			// A chunk ends only where the next message would not fit.
			if i+1 < len(cs) && len(c) < lim.count && size+wire.ProduceBytes(cs[i+1][0]) <= lim.bytes {
				t.Fatalf("limits %+v: chunk %d ends early", lim, i)
			}
			all = append(all, c...)
		}
		if len(all) != len(msgs) || !slices.EqualFunc(all, msgs, func(a, b kafka.Message) bool { return string(a.Key) == string(b.Key) }) {
			t.Fatalf("limits %+v: chunks do not add up to the input in order", lim)
		}
	}
}

// fakeWriter fails each listed call (by number) and records what it was
// asked to write.
type fakeWriter struct {
	calls [][]string
	fail  map[int]bool
}

func (w *fakeWriter) WriteMessages(_ context.Context, msgs ...kafka.Message) error {
	var keys []string
	for _, m := range msgs {
		keys = append(keys, string(m.Key))
	}
	w.calls = append(w.calls, keys)
	if w.fail[len(w.calls)] {
		return errors.New("broker restarted")
	}
	return nil
}

// TestPublishRetriesAChunkBeforeTheNext: a failed chunk is sent again
// before any later chunk; nothing later goes out first.
func TestPublishRetriesAChunkBeforeTheNext(t *testing.T) {
	var msgs []kafka.Message
	for i := range 10 {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprint(i))})
	}
	w := &fakeWriter{fail: map[int]bool{1: true, 2: true, 4: true}}
	if err := publish(t.Context(), w, msgs, 4, wire.MaxProduceBytes, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"0", "1", "2", "3"}, {"0", "1", "2", "3"}, {"0", "1", "2", "3"}, {"4", "5", "6", "7"}, {"4", "5", "6", "7"}, {"8", "9"}}
	if fmt.Sprint(w.calls) != fmt.Sprint(want) {
		t.Fatalf("writes = %v\nwant     %v", w.calls, want)
	}
}
