//go:build integration

package consumer

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	dt "github.com/deltaplane/deltaplane/services/dataplane/internal/deltatest"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/deltaplane/deltaplane/shared/wire"
)

func TestFullModeReplacesWholeConfig(t *testing.T) {
	brokers, prefix, topic := fullTopic(t)
	dt.PublishFull(t, brokers, topic, 3, map[string]string{"services/a": `{"id":"a"}`, "routes/r": `{"id":"r","paths":["/r"]}`})

	c, st := runFullConsumer(t, brokers, topic, prefix)

	dt.Eventually(t, wait, "version 3", func() bool { return c.Ready() && c.Snapshot().Version == 3 })
	if _, ok := c.Snapshot().Router().Get("r"); !ok {
		t.Fatal("route r missing")
	}
	h := dt.PublishFull(t, brokers, topic, 5, map[string]string{"services/a": `{"id":"a","v":2}`, "services/b": `{"id":"b"}`})
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

// A data plane catching up over several snapshots decodes and applies only
// the newest: its cost does not grow with the snapshots behind it.
func TestFullModeCatchUpAppliesOnlyTheNewest(t *testing.T) {
	brokers, prefix, topic := fullTopic(t)
	dt.PublishFull(t, brokers, topic, 1, map[string]string{"services/a": `{"id":"a"}`})
	dt.PublishFull(t, brokers, topic, 2, map[string]string{"services/a": `{"id":"a","v":2}`})
	h := dt.PublishFull(t, brokers, topic, 3, map[string]string{"services/a": `{"id":"a","v":3}`, "services/b": `{"id":"b"}`})

	c, _ := runFullConsumer(t, brokers, topic, prefix)

	dt.Eventually(t, wait, "version 3", func() bool { return c.Ready() && c.Snapshot().Version == 3 })
	if s := c.Snapshot(); s.Hash != h || s.Len() != 2 {
		t.Fatalf("hash %s (want %s), %d entities", s.Hash, h, s.Len())
	}
	if n := c.Stats.BatchesApplied.Load(); n != 1 {
		t.Fatalf("applied %d snapshots catching up over 3, want only the newest", n)
	}
}

// fullTopic creates a test's own dp.full topic and its quarantine topic.
func fullTopic(t *testing.T) (brokers []string, prefix, topic string) {
	t.Helper()
	brokers, prefix = dt.Brokers(t), dt.Prefix(t)
	topic = prefix + wire.TopicFull
	dt.CreateTopic(t, brokers, topic, nil)
	dt.CreateDLQ(t, brokers, topic+wire.DLQSuffix)
	return brokers, prefix, topic
}

// runFullConsumer runs a full-mode consumer on a fresh store until the test
// ends.
func runFullConsumer(t *testing.T, brokers []string, topic, prefix string) (*Consumer, *store.Bolt) {
	t.Helper()
	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Brokers: brokers, Topic: topic, Group: prefix + "g", ProbeInterval: 200 * time.Millisecond, Mode: Full(),
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}, st)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	return c, st
}
