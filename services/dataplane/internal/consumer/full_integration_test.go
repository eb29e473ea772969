//go:build integration

package consumer

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	dt "github.com/deltaplane/deltaplane/services/dataplane/internal/deltatest"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// publishFull writes a whole configuration to dp.full the way the
// sync-gateway's full mode does.
func publishFull(t *testing.T, w *kafka.Writer, version uint64, ents map[string]string) wire.Hash {
	t.Helper()
	cfg := wire.FullConfig{Schema: 1, Version: version, Tx: version, Config: map[string][]json.RawMessage{}}
	var h wire.Hash
	for k, v := range ents {
		typ, _, _ := wire.SplitKey(k)
		cfg.Config[typ] = append(cfg.Config[typ], json.RawMessage(v))
		h = h.Add(wire.EntityHash(k, []byte(v)))
	}
	cfg.Hash = h.String()
	chunks, err := wire.EncodeFull(cfg)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]kafka.Message, len(chunks))
	for i, ch := range chunks {
		hd := wire.DeltaHeader{Schema: 1, Version: version, Index: i, Count: len(chunks), Hash: h, Tx: version}
		msgs[i] = kafka.Message{Key: []byte(wire.FullKey(version, i)), Value: ch, Headers: hd.Headers()}
	}
	if err := w.WriteMessages(t.Context(), msgs...); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestFullModeReplacesWholeConfig(t *testing.T) {
	brokers := dt.Brokers(t)
	prefix := dt.Prefix(t)
	topic := prefix + wire.TopicFull
	dt.CreateTopic(t, brokers, topic, nil)
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, BatchTimeout: 5 * time.Millisecond}
	defer w.Close()
	publishFull(t, w, 3, map[string]string{"services/a": `{"id":"a"}`, "routes/r": `{"id":"r","paths":["/r"]}`})

	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := New(Config{Brokers: brokers, Topic: topic, Group: prefix + "g", ProbeInterval: 200 * time.Millisecond, Full: true,
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}, st)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() { cancel(); <-done }()

	dt.Eventually(t, wait, "version 3", func() bool { return c.Ready() && c.Snapshot().Version == 3 })
	if _, ok := c.Snapshot().Router().Get("r"); !ok {
		t.Fatal("route r missing")
	}
	h := publishFull(t, w, 5, map[string]string{"services/a": `{"id":"a","v":2}`, "services/b": `{"id":"b"}`})
	dt.Eventually(t, wait, "version 5", func() bool { return c.Snapshot().Version == 5 })
	s := c.Snapshot()
	if s.Hash != h || s.Len() != 2 {
		t.Fatalf("hash %s (want %s), %d entities", s.Hash, h, s.Len())
	}
	if _, ok := s.Router().Get("r"); ok {
		t.Fatal("route r survived a full replacement without it")
	}
	if m, _ := st.Meta(); m.Version != 5 || m.Hash != h {
		t.Fatalf("stored meta %+v", m)
	}
	if v, _ := st.Get("routes/r"); v != nil {
		t.Fatal("route r still stored")
	}
}
