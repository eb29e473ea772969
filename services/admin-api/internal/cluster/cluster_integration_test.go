//go:build integration

package cluster_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/cluster"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

func TestTrackerReportsDataPlanes(t *testing.T) {
	brokers := testenv.Kafka(t)
	prefix := testenv.TopicPrefix(t)
	ctx := t.Context()
	if err := broker.EnsureTopics(ctx, brokers, 30*time.Second,
		broker.Compacted(prefix+wire.TopicStatus, nil), broker.Compacted(prefix+wire.TopicDeltas, nil)); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	now := time.Now().UTC()
	hb := func(node string, version uint64) kafka.Message {
		b, _ := json.Marshal(wire.Heartbeat{Schema: 1, NodeID: node, Hostname: "host-" + node, IP: "127.0.0.9", Mode: "incremental",
			Version: version, Hash: "00000000000000aa", LastApply: now, LastSeen: now})
		return kafka.Message{Topic: prefix + wire.TopicStatus, Key: []byte(node), Value: b}
	}
	delta := func(v uint64) kafka.Message {
		return kafka.Message{Topic: prefix + wire.TopicDeltas, Key: []byte(wire.Key("services", "x")), Value: []byte(`{"id":"x"}`),
			Headers: wire.DeltaHeader{Schema: 1, Version: v, Index: 0, Count: 1, Hash: wire.Hash(v), Tx: v}.Headers()}
	}
	gone := kafka.Message{Topic: prefix + wire.TopicStatus, Key: []byte("node-c")}
	if err := w.WriteMessages(ctx, hb("node-a", 1), hb("node-b", 1), hb("node-c", 1), hb("node-a", 3), gone,
		delta(1), delta(2), delta(3), kafka.Message{Topic: prefix + wire.TopicStatus, Key: []byte("junk"), Value: []byte("{not json")}); err != nil {
		t.Fatal(err)
	}
	tr := cluster.New(brokers, prefix, 100*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { tr.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	var dps []cluster.DataPlane
	testenv.Eventually(t, 30*time.Second, "two data planes and version 3", func() bool {
		dps = tr.DataPlanes(time.Now(), "3.9.0")
		return len(dps) == 2 && tr.Latest().Version == 3 && dps[0].AppliedVersion == 3
	})
	a, b := dps[0], dps[1]
	if a.ID != "node-a" || a.VersionsBehind != 0 || a.SyncStatus != "normal" || a.Hostname != "host-node-a" || a.TTL <= 0 || a.LastSeen != now.Unix() {
		t.Errorf("node-a = %+v", a)
	}
	if b.ID != "node-b" || b.AppliedVersion != 1 || b.VersionsBehind != 2 || b.SecondsBehind < 0 || b.LatestVersion != 3 {
		t.Errorf("node-b = %+v", b)
	}
}
