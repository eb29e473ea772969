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

// The tracker follows dp.deltas: which version each transaction became,
// which live data planes applied it, and a wait that ends at the live TTL
// of a silent data plane instead of hanging on it.
func TestTrackerTracksChanges(t *testing.T) {
	brokers := testenv.Kafka(t)
	prefix := testenv.TopicPrefix(t)
	ctx := t.Context()
	if err := broker.EnsureTopics(ctx, brokers, 30*time.Second,
		broker.Compacted(prefix+wire.TopicStatus, nil), broker.Compacted(prefix+wire.TopicDeltas, nil)); err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	hb := func(node string, version uint64, seen time.Time) kafka.Message {
		b, _ := json.Marshal(wire.Heartbeat{Schema: 1, NodeID: node, Mode: "incremental", Version: version, LastApply: seen, LastSeen: seen})
		return kafka.Message{Topic: prefix + wire.TopicStatus, Key: []byte(node), Value: b}
	}
	// version v is transaction 10+v, two records; version 2's tx is 12.
	var msgs []kafka.Message
	for v := uint64(1); v <= 3; v++ {
		for i := range 2 {
			msgs = append(msgs, kafka.Message{Topic: prefix + wire.TopicDeltas, Key: []byte(wire.Key("services", string(rune('a'+i)))), Value: []byte(`{"id":"x"}`),
				Headers: wire.DeltaHeader{Schema: 1, Version: v, Index: i, Count: 2, Hash: wire.Hash(v), Tx: 10 + v}.Headers()})
		}
	}
	now := time.Now().UTC()
	msgs = append(msgs, hb("fast", 3, now), hb("slow", 1, now), hb("gone", 1, now.Add(-time.Hour)))
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	tr := cluster.New(brokers, prefix, 100*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tr.SetLiveTTL(2 * time.Second)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { tr.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	testenv.Eventually(t, 30*time.Second, "three versions and three data planes", func() bool {
		return len(tr.Versions(10)) == 3 && len(tr.DataPlanes(time.Now(), "3.9.0")) == 3
	})
	if vs := tr.Versions(10); vs[0].Version != 3 || vs[0].Tx != 13 || vs[0].Records != 2 || vs[0].Bytes == 0 {
		t.Errorf("newest version = %+v", vs[0])
	}

	c := tr.Change(12, time.Now())
	if c.Version != 2 || !c.Exact || c.State != cluster.StatePropagating || c.Live {
		t.Errorf("tx 12 = %+v, want version 2, propagating", c)
	}
	if len(c.Applied) != 1 || c.Applied[0].ID != "fast" || len(c.Behind) != 1 || c.Behind[0].ID != "slow" ||
		c.Behind[0].VersionsBehind != 1 || len(c.Down) != 1 || c.Down[0].ID != "gone" {
		t.Errorf("tx 12: applied %+v behind %+v down %+v", c.Applied, c.Behind, c.Down)
	}
	if c := tr.Change(14, time.Now()); c.State != cluster.StatePending || c.Version != 0 {
		t.Errorf("tx 14 = %+v, want pending", c)
	}
	if c := tr.Change(0, time.Now()); !c.Live {
		t.Errorf("tx 0 (nothing changed) = %+v, want live", c)
	}

	// A wait with a deadline returns the straggler.
	wctx, wcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	c = tr.WaitLive(wctx, 12)
	wcancel()
	if c.Live || len(c.Behind) != 1 || c.Behind[0].ID != "slow" {
		t.Errorf("wait with a deadline = %+v, want slow behind", c)
	}
	// The slow data plane catches up: the wait ends live.
	if err := w.WriteMessages(ctx, hb("slow", 2, time.Now().UTC())); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel = context.WithTimeout(ctx, 30*time.Second)
	c = tr.WaitLive(wctx, 12)
	wcancel()
	if !c.Live || c.State != cluster.StateLive || len(c.Applied) != 2 {
		t.Errorf("after the catch-up = %+v, want live on two", c)
	}
	// A data plane that goes silent stops counting after the live TTL:
	// tx 13 is not applied by slow, whose heartbeat ages past 2s while
	// fast keeps sending them.
	beat, stopBeat := context.WithCancel(ctx)
	beating := make(chan struct{})
	go func() {
		defer close(beating)
		for beat.Err() == nil {
			_ = w.WriteMessages(beat, hb("fast", 3, time.Now().UTC()))
			select {
			case <-beat.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	wctx, wcancel = context.WithTimeout(ctx, 30*time.Second)
	c = tr.WaitLive(wctx, 13)
	wcancel()
	stopBeat()
	<-beating
	if !c.Live || len(c.Applied) != 1 || c.Applied[0].ID != "fast" || len(c.Down) != 2 || c.Down[1].ID != "slow" || c.Down[1].VersionsBehind != 1 {
		t.Errorf("tx 13 after slow went silent = %+v, want live on fast with slow down", c)
	}
	// With no live data plane at all nothing is live: every heartbeat
	// ages past the TTL.
	testenv.Eventually(t, 30*time.Second, "every data plane down", func() bool {
		c = tr.Change(13, time.Now())
		return len(c.Down) == 3
	})
	if c.Live || c.State != cluster.StatePropagating {
		t.Errorf("tx 13 with every data plane down = %+v, want not live", c)
	}
}
