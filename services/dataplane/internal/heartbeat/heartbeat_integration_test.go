//go:build integration

package heartbeat_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	dt "github.com/deltaplane/deltaplane/services/dataplane/internal/deltatest"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/heartbeat"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// TestKickBurstIsCoalesced: a stream of batches (one Kick every 5 ms, as
// a data plane applying 200 changes a second kicks) is reported with about
// one heartbeat per KickGap, not one per batch, and the last one carries
// the newest version. The periodic interval is an hour, so every heartbeat
// here comes from a Kick (or the first one at start).
func TestKickBurstIsCoalesced(t *testing.T) {
	brokers := dt.Brokers(t)
	topic := dt.Prefix(t) + wire.TopicStatus
	dt.CreateTopic(t, brokers, topic, nil)
	var version atomic.Uint64
	p := heartbeat.New(slog.New(slog.NewTextHandler(io.Discard, nil)), brokers, topic, "node-1", time.Hour,
		func() wire.Heartbeat { return wire.Heartbeat{Version: version.Load()} }, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const batches = 200
	start := time.Now()
	for range batches {
		version.Add(1)
		p.Kick()
		time.Sleep(5 * time.Millisecond)
	}
	burst := time.Since(start)

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	rctx, rcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer rcancel()
	var seen []uint64
	for len(seen) == 0 || seen[len(seen)-1] != batches {
		m, err := r.ReadMessage(rctx)
		if err != nil {
			t.Fatalf("no heartbeat with version %d; heartbeats seen: %v (%v)", batches, seen, err)
		}
		var hb wire.Heartbeat
		if err := json.Unmarshal(m.Value, &hb); err != nil {
			t.Fatal(err)
		}
		seen = append(seen, hb.Version)
	}
	// One at start, then at most one per KickGap since the burst began
	// (plus the one that ends it).
	if limit := 2 + int(time.Since(start)/heartbeat.KickGap(time.Hour)); len(seen) > limit {
		t.Errorf("%d heartbeats for %d batches kicked within %s, want at most %d: %v", len(seen), batches, burst, limit, seen)
	}
}
