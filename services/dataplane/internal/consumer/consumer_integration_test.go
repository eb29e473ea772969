//go:build integration

package consumer

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	dt "github.com/deltaplane/deltaplane/services/dataplane/internal/deltatest"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

const wait = 30 * time.Second

type fixture struct {
	t       *testing.T
	brokers []string
	topic   string
	group   string
	dir     string
	node    string
	prod    *dt.Producer
	// dlqTopic, when set, replaces the default quarantine topic.
	dlqTopic string
	// hook, when set, is called by the next started consumer's store
	// before it applies a batch of the version given (it may panic to play
	// a store, or anything under the handler, that fails on one batch).
	hook func(version uint64)
}

// hookedStore is the bbolt store with a hook before each batch is applied.
type hookedStore struct {
	*store.Bolt
	hook func(version uint64)
}

func (s hookedStore) Apply(changes []store.Change, m store.Meta) error {
	s.hook(m.Version)
	return s.Bolt.Apply(changes, m)
}

func newFixture(t *testing.T, extra map[string]string) *fixture {
	brokers := dt.Brokers(t)
	prefix := dt.Prefix(t)
	f := &fixture{t: t, brokers: brokers, topic: prefix + wire.TopicDeltas, group: prefix + "group", dir: t.TempDir(), node: prefix + "node"}
	dt.CreateTopic(t, brokers, f.topic, extra)
	dt.CreateDLQ(t, brokers, f.dlq())
	t.Cleanup(func() {
		_, _ = broker.Client(brokers).DeleteGroups(context.Background(), &kafka.DeleteGroupsRequest{GroupIDs: []string{f.group}})
	})
	f.prod = dt.NewProducer(t, brokers, f.topic)
	return f
}

// running is one consumer process: its store and its Run goroutine.
type running struct {
	c      *Consumer
	st     *store.Bolt
	stop   func()
	cancel func() // ends Run without waiting (stop waits)
}

func (f *fixture) dlq() string { return f.topic + wire.DLQSuffix }

func (f *fixture) start() *running {
	f.t.Helper()
	st, err := store.Open(f.dir, store.Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	if os.Getenv("DP_TEST_LOG") != "" {
		log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	var cst Store = st
	if f.hook != nil {
		cst = hookedStore{Bolt: st, hook: f.hook}
	}
	c, err := New(Config{Brokers: f.brokers, Topic: f.topic, Group: f.group, ProbeInterval: 200 * time.Millisecond, Logger: log, NodeID: f.node, DLQTopic: f.dlqTopic}, cst)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(f.t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	r := &running{c: c, st: st, cancel: cancel}
	stopped := false
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("Run: %v", err)
		}
		st.Close()
	}
	f.t.Cleanup(r.stop)
	return r
}

// converged waits until the consumer holds exactly the producer's state.
func (f *fixture) converged(r *running) {
	f.t.Helper()
	dt.Eventually(f.t, wait, "consumer converges on the producer's state", func() bool {
		s := r.c.Snapshot()
		return r.c.Ready() && s.Version == f.prod.Version && s.Hash == f.prod.Hash && s.Len() == len(f.prod.State)
	})
	s := r.c.Snapshot()
	for k, v := range f.prod.State {
		got, ok := s.Entity(k)
		if !ok || string(got) != string(v) {
			f.t.Fatalf("entity %s = %q, want %q", k, got, v)
		}
	}
}

// commitOneAndStop publishes one version (services/a), waits until r
// applied and committed it, and stops r.
func (f *fixture) commitOneAndStop(r *running) {
	f.t.Helper()
	f.prod.Batch(dt.Put("services/a", `{"id":"a"}`))
	f.converged(r)
	dt.Eventually(f.t, wait, "offset committed", func() bool { return r.c.CommittedOffset() == 1 })
	r.stop()
}

// applyBehind writes ch straight into the stopped consumer's store, with
// the stored position and hash as edit leaves them (unchanged if nil).
func (f *fixture) applyBehind(ch store.Change, edit func(*store.Meta)) {
	f.t.Helper()
	st, err := store.Open(f.dir, store.Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	defer st.Close()
	m, _ := st.Meta()
	if edit != nil {
		edit(&m)
	}
	if err := st.Apply([]store.Change{ch}, m); err != nil {
		f.t.Fatal(err)
	}
}

// recreateAfterTwoVersions publishes two versions (services/a, then
// services/b), waits until r applied and committed them, stops r, and
// deletes dp.deltas and creates it again, empty.
func (f *fixture) recreateAfterTwoVersions(r *running) {
	f.t.Helper()
	t := f.t
	f.prod.Batch(dt.Put("services/a", `{"id":"a"}`))
	f.prod.Batch(dt.Put("services/b", `{"id":"b"}`))
	f.converged(r)
	dt.Eventually(t, wait, "offset committed", func() bool { return r.c.CommittedOffset() == 2 })
	r.stop()
	dt.DeleteTopics(f.brokers, f.topic)
	dt.Eventually(t, wait, "topic gone", func() bool {
		md, err := broker.Client(f.brokers).Metadata(t.Context(), &kafka.MetadataRequest{Topics: []string{f.topic}})
		return err == nil && len(md.Topics) == 1 && md.Topics[0].Error != nil
	})
	dt.CreateTopic(t, f.brokers, f.topic, nil)
}

func keys(r *running) []string {
	var out []string
	r.c.Snapshot().ForEach(func(k string, _ []byte) bool { out = append(out, k); return true })
	sort.Strings(out)
	return out
}

func TestEmptyTopicIsAnEmptyCompleteConfig(t *testing.T) {
	f := newFixture(t, nil)
	r := f.start()
	dt.Eventually(t, wait, "ready on an empty topic", r.c.Ready)
	if got := r.c.Stats.Resyncs.Load(); got != 1 {
		t.Fatalf("resyncs = %d, want 1 (first start)", got)
	}
	f.prod.Batch(dt.Put("services/a", `{"id":"a"}`))
	f.converged(r)
}

func TestBatchAppliedOnlyWhenComplete(t *testing.T) {
	f := newFixture(t, nil)
	r := f.start()
	dt.Eventually(t, wait, "ready", r.c.Ready)
	msgs, v := f.prod.Prepare(
		dt.Put("services/s1", `{"id":"s1","host":"a"}`),
		dt.Put("routes/r1", `{"id":"r1","paths":["/a"],"service":{"id":"s1"}}`),
		dt.Put("routes/r2", `{"id":"r2","paths":["/b"],"service":{"id":"s1"}}`),
	)
	f.prod.Send(msgs[:2]...)
	dt.Eventually(t, wait, "two records consumed", func() bool { return r.c.Stats.RecordsConsumed.Load() == 2 })
	if s := r.c.Snapshot(); s.Version != 0 || s.Len() != 0 {
		t.Fatalf("half a batch is visible: version %d, %d entities", s.Version, s.Len())
	}
	if m, _ := r.st.Meta(); m.Version != 0 {
		t.Fatalf("half a batch is stored: version %d", m.Version)
	}
	f.prod.Send(msgs[2])
	f.converged(r)
	if r.c.Snapshot().Version != v || r.c.Stats.BatchesApplied.Load() != 1 {
		t.Fatalf("version %d batches %d", r.c.Snapshot().Version, r.c.Stats.BatchesApplied.Load())
	}
	if _, ok := r.c.Snapshot().Router().Get("r2"); !ok {
		t.Fatal("route r2 not in the router")
	}
}

func TestDuplicatesAreNoOps(t *testing.T) {
	f := newFixture(t, nil)
	r := f.start()
	dt.Eventually(t, wait, "ready", r.c.Ready)
	msgs, _ := f.prod.Prepare(dt.Put("services/a", `{"id":"a"}`), dt.Put("services/b", `{"id":"b"}`))
	f.prod.Send(msgs...)
	f.prod.Batch(dt.Put("services/a", `{"id":"a","name":"v2"}`))
	f.converged(r)
	before := r.c.Snapshot()
	f.prod.Send(msgs...) // redelivery of version 1
	dt.Eventually(t, wait, "duplicates counted", func() bool { return r.c.Stats.DuplicatesSkipped.Load() == 2 })
	after := r.c.Snapshot()
	if after.Version != 2 || after.Hash != before.Hash {
		t.Fatalf("redelivery changed the config: version %d hash %s", after.Version, after.Hash)
	}
	if got, _ := after.Entity("services/a"); string(got) != `{"id":"a","name":"v2"}` {
		t.Fatalf("services/a = %s", got)
	}
	if r.c.Stats.Resyncs.Load() != 1 || r.c.Stats.BatchesApplied.Load() != 2 {
		t.Fatalf("resyncs %d batches %d", r.c.Stats.Resyncs.Load(), r.c.Stats.BatchesApplied.Load())
	}
}

func TestRestartResumesFromStoredOffset(t *testing.T) {
	f := newFixture(t, nil)
	r := f.start()
	f.prod.Batch(dt.Put("services/a", `{"id":"a"}`))
	f.prod.Batch(dt.Put("services/b", `{"id":"b"}`), dt.Del("services/a"))
	f.converged(r)
	dt.Eventually(t, wait, "offset committed to the group", func() bool { return r.c.CommittedOffset() == 3 })
	committed, err := committedOffset(t.Context(), r.c.client, f.group, f.topic)
	if err != nil || committed != 3 {
		t.Fatalf("group's committed offset = %d, %v; want 3", committed, err)
	}
	r.stop()

	r2 := f.start()
	if !r2.c.Ready() || r2.c.Snapshot().Version != 2 {
		t.Fatalf("restart did not load the stored config: ready %v version %d", r2.c.Ready(), r2.c.Snapshot().Version)
	}
	// Once the node has talked to Kafka and sees no lag, it has consumed
	// nothing: it resumed at its stored offset.
	dt.Eventually(t, wait, "restarted node in contact, no lag", func() bool {
		return !r2.c.LastContact().IsZero() && r2.c.Lag() == 0 && r2.c.Stats.Resyncs.Load() == 0
	})
	if got := r2.c.Stats.RecordsConsumed.Load(); got != 0 {
		t.Fatalf("records consumed after restart with nothing new = %d, want 0", got)
	}
	f.prod.Batch(dt.Put("services/c", `{"id":"c"}`))
	f.converged(r2)
	if got := r2.c.Stats.RecordsConsumed.Load(); got != 1 {
		t.Fatalf("records consumed after restart = %d, want 1 (only the new record)", got)
	}
	if r2.c.Stats.Resyncs.Load() != 0 {
		t.Fatalf("restart resynced")
	}
}

func TestGapTriggersResync(t *testing.T) {
	f := newFixture(t, nil)
	r := f.start()
	f.prod.Batch(dt.Put("services/a", `{"id":"a"}`))
	f.converged(r)
	// Version 2 is lost on the way; version 3 arrives.
	lost, _ := f.prod.Prepare(dt.Put("services/b", `{"id":"b"}`), dt.Del("services/a"))
	f.prod.Batch(dt.Put("services/c", `{"id":"c"}`))
	dt.Eventually(t, wait, "gap detected", func() bool { return r.c.Stats.Gaps.Load() == 1 })
	// The resync reads the topic, which lacks version 2 too: the result
	// matches the topic (a, c), and its hash disagrees with the producer's.
	dt.Eventually(t, wait, "resync done", func() bool { return r.c.Stats.Resyncs.Load() == 2 })
	if got := keys(r); len(got) != 2 || got[0] != "services/a" || got[1] != "services/c" {
		t.Fatalf("after resync keys = %v", got)
	}
	// Once version 2 shows up in the topic, the next resync converges.
	f.prod.Send(lost...)
	f.prod.Batch(dt.Put("services/d", `{"id":"d"}`))
	f.converged(r)
}

func TestHashMismatchTriggersResync(t *testing.T) {
	f := newFixture(t, nil)
	r := f.start()
	f.commitOneAndStop(r)

	// The local store diverges from the topic (a rogue entity, with a
	// position that still looks consistent).
	rogue := []byte(`{"id":"rogue"}`)
	f.applyBehind(store.Change{Key: "services/rogue", Value: rogue}, func(m *store.Meta) {
		m.Hash = m.Hash.Add(wire.EntityHash("services/rogue", rogue))
	})

	r2 := f.start()
	if _, ok := r2.c.Snapshot().Entity("services/rogue"); !ok {
		t.Fatal("rogue entity not loaded")
	}
	f.prod.Batch(dt.Put("services/b", `{"id":"b"}`))
	dt.Eventually(t, wait, "hash mismatch detected", func() bool { return r2.c.Stats.HashMismatches.Load() == 1 })
	f.converged(r2)
	if r2.c.Stats.Resyncs.Load() != 1 {
		t.Fatalf("resyncs = %d, want 1", r2.c.Stats.Resyncs.Load())
	}
	if _, ok := r2.c.Snapshot().Entity("services/rogue"); ok {
		t.Fatal("rogue entity survived the resync")
	}
	if v, _ := r2.st.Get("services/rogue"); v != nil {
		t.Fatal("rogue entity still in the store")
	}
}

func TestFreshNodeResyncsFromCompactedLog(t *testing.T) {
	f := newFixture(t, nil)
	// What compaction leaves of: v1 {a,b,c}, v2 {a'}, v3 {delete b}, v4 {d}:
	// v1's a is superseded by v2; b's value by v3's tombstone.
	v1, _ := f.prod.Prepare(dt.Put("services/a", `{"id":"a"}`), dt.Put("services/b", `{"id":"b"}`), dt.Put("services/c", `{"id":"c"}`))
	v2, _ := f.prod.Prepare(dt.Put("services/a", `{"id":"a","v":2}`))
	v3, _ := f.prod.Prepare(dt.Del("services/b"))
	f.prod.Send(v1[2], v2[0], v3[0])
	f.prod.Batch(dt.Put("services/d", `{"id":"d"}`))

	r := f.start()
	f.converged(r)
	if got := keys(r); len(got) != 3 || got[0] != "services/a" || got[1] != "services/c" || got[2] != "services/d" {
		t.Fatalf("keys = %v", got)
	}
	if r.c.Stats.Resyncs.Load() != 1 || r.c.Stats.BatchesApplied.Load() != 0 {
		t.Fatalf("resyncs %d batches %d", r.c.Stats.Resyncs.Load(), r.c.Stats.BatchesApplied.Load())
	}
	m, _ := r.st.Meta()
	if m.Version != 4 || m.NextOffset != 4 || !m.Complete {
		t.Fatalf("stored meta = %+v", m)
	}
}

func TestLostGroupOffsetResyncs(t *testing.T) {
	f := newFixture(t, nil)
	r := f.start()
	f.commitOneAndStop(r)
	// The group's offsets expired (offsets.retention.minutes) or the group
	// was deleted: never trust "latest", rebuild from the start.
	resp, err := broker.Client(f.brokers).DeleteGroups(t.Context(), &kafka.DeleteGroupsRequest{GroupIDs: []string{f.group}})
	if err != nil || resp.Errors[f.group] != nil {
		t.Fatalf("delete group: %v %v", err, resp)
	}
	f.prod.Batch(dt.Put("services/b", `{"id":"b"}`))
	r2 := f.start()
	dt.Eventually(t, wait, "resync", func() bool { return r2.c.Stats.Resyncs.Load() == 1 })
	f.converged(r2)
	dt.Eventually(t, wait, "offset committed again", func() bool { return r2.c.CommittedOffset() == 2 })
}

func TestOfflineLongerThanTombstoneRetentionResyncs(t *testing.T) {
	retention := time.Second
	f := newFixture(t, map[string]string{
		"delete.retention.ms":       "1000",
		"segment.ms":                "100",
		"min.cleanable.dirty.ratio": "0.01",
	})
	r := f.start()
	dt.Eventually(t, wait, "ready", r.c.Ready)
	f.prod.Batch(dt.Put("services/s", `{"id":"s"}`), dt.Put("routes/r", `{"id":"r","paths":["/r"],"service":{"id":"s"}}`))
	f.converged(r)
	dt.Eventually(t, wait, "offset committed", func() bool { return r.c.CommittedOffset() == 2 })
	r.stop()
	stopped := time.Now()

	// While the node is away the route is deleted; compaction may drop the
	// tombstone once delete.retention.ms has passed.
	f.prod.Batch(dt.Del("routes/r"))
	f.prod.Batch(dt.Put("services/t", `{"id":"t"}`))
	dt.Eventually(t, wait, "offline longer than delete.retention.ms", func() bool { return time.Since(stopped) > retention+500*time.Millisecond })

	r2 := f.start()
	f.converged(r2)
	if r2.c.Stats.Resyncs.Load() != 1 || !strings.Contains(r2.c.LastResyncReason(), "delete.retention.ms") {
		t.Fatalf("resyncs %d, reason %q", r2.c.Stats.Resyncs.Load(), r2.c.LastResyncReason())
	}
	if _, ok := r2.c.Snapshot().Router().Get("r"); ok {
		t.Fatal("deleted route came back")
	}
}

func TestMalformedRecordIsSkippedAndCounted(t *testing.T) {
	f := newFixture(t, nil)
	r := f.start()
	dt.Eventually(t, wait, "ready", r.c.Ready)
	f.prod.Batch(dt.Put("services/a", `{"id":"a"}`))
	// A record with no dp-* headers, then one from a newer schema.
	newer := wire.DeltaHeader{Schema: 2, Version: 2, Index: 0, Count: 1}
	f.prod.Send(kafka.Message{Key: []byte("services/x"), Value: []byte(`{"id":"x"}`)},
		kafka.Message{Key: []byte("services/y"), Value: []byte(`{"id":"y"}`), Headers: newer.Headers()})
	f.prod.Batch(dt.Put("services/b", `{"id":"b"}`))
	f.converged(r)
	if r.c.Stats.BadRecords.Load() != 2 || r.c.Stats.Resyncs.Load() != 1 || !strings.Contains(r.c.LastError(), "schema") {
		t.Fatalf("bad %d resyncs %d last error %q", r.c.Stats.BadRecords.Load(), r.c.Stats.Resyncs.Load(), r.c.LastError())
	}
	if _, ok := r.c.Snapshot().Entity("services/x"); ok {
		t.Fatal("malformed record applied")
	}
}

func TestRecreatedTopicResyncs(t *testing.T) {
	f := newFixture(t, nil)
	r := f.start()
	dt.Eventually(t, wait, "ready", r.c.Ready)
	// The topic is deleted and created again with a new, shorter history.
	f.recreateAfterTwoVersions(r)
	f.prod = dt.NewProducer(t, f.brokers, f.topic)
	f.prod.Batch(dt.Put("services/z", `{"id":"z"}`))
	r2 := f.start()
	f.converged(r2)
	if r2.c.Stats.Resyncs.Load() != 1 || !strings.Contains(r2.c.LastResyncReason(), "high-water mark") {
		t.Fatalf("resyncs %d reason %q", r2.c.Stats.Resyncs.Load(), r2.c.LastResyncReason())
	}
	if got := keys(r2); len(got) != 1 || got[0] != "services/z" {
		t.Fatalf("keys %v", got)
	}
}

func TestCorruptStoreResyncsAtStart(t *testing.T) {
	f := newFixture(t, nil)
	r := f.start()
	dt.Eventually(t, wait, "ready", r.c.Ready)
	f.commitOneAndStop(r)
	// An entity changes behind the position's back: the stored hash no
	// longer matches.
	f.applyBehind(store.Change{Key: "services/a", Value: []byte(`{"id":"a","evil":true}`)}, nil)
	r2 := f.start()
	if r2.c.Ready() {
		t.Fatal("a store that fails its hash is ready")
	}
	f.converged(r2)
	if r2.c.Stats.Resyncs.Load() != 1 || !strings.Contains(r2.c.LastResyncReason(), "hash") {
		t.Fatalf("resyncs %d reason %q", r2.c.Stats.Resyncs.Load(), r2.c.LastResyncReason())
	}
}
