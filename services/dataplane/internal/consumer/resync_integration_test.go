//go:build integration

package consumer

import (
	"strings"
	"testing"

	dt "github.com/deltaplane/deltaplane/services/dataplane/internal/deltatest"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// ready waits until the consumer has a complete configuration.
func (f *fixture) ready(r *running) {
	f.t.Helper()
	dt.Eventually(f.t, wait, "ready", r.c.Ready)
}

// A paused, fenced-out sync-gateway appends a late copy of version 2 after
// versions 2 (update of X) and 3 (delete of X). A node that rebuilds from
// that log must end at version 3 without X: per key the record of the
// highest version wins, whatever its offset.
func TestResyncKeepsHighestVersionPerKey(t *testing.T) {
	f := newFixture(t, nil)
	v1, _ := f.prod.Prepare(dt.Put("services/x", `{"id":"x"}`), dt.Put("services/y", `{"id":"y"}`))
	v2, _ := f.prod.Prepare(dt.Put("services/x", `{"id":"x","v":2}`))
	v3, _ := f.prod.Prepare(dt.Del("services/x"))
	f.prod.Send(v1...)
	f.prod.Send(v2...)
	f.prod.Send(v3...)
	f.prod.Send(v2...) // the late copy

	r := f.start()
	f.ready(r)
	s := r.c.Snapshot()
	if s.Version != 3 {
		t.Fatalf("resync ended at version %d, want 3", s.Version)
	}
	if _, ok := s.Entity("services/x"); ok {
		t.Fatal("the entity deleted at version 3 came back")
	}
	if s.Hash != f.prod.Hash {
		t.Fatalf("hash %s, want %s", s.Hash, f.prod.Hash)
	}
	m, _ := r.st.Meta()
	if m.Version != 3 || m.NextOffset != 5 {
		t.Fatalf("stored meta version %d next %d, want 3 and 5", m.Version, m.NextOffset)
	}
	f.prod.Batch(dt.Put("services/z", `{"id":"z"}`))
	f.converged(r)
}

// A node holding version 5 whose group offset is gone rebuilds from a log
// whose newest complete version is 3: it must not go back to 3.
func TestResyncNeverGoesBack(t *testing.T) {
	f := newFixture(t, nil)
	r := f.start()
	f.prod.Batch(dt.Put("services/a", `{"id":"a"}`))
	f.prod.Batch(dt.Put("services/b", `{"id":"b"}`))
	f.prod.Batch(dt.Put("services/c", `{"id":"c"}`))
	f.converged(r)
	dt.Eventually(t, wait, "offset committed", func() bool { return r.c.CommittedOffset() == 3 })
	r.stop()
	// The node's store says version 5 (its content and hash are
	// consistent); the log it will rebuild from holds versions 1-3 only.
	st, err := store.Open(f.dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetMeta(func(m *store.Meta) { m.Version = 5 }); err != nil {
		t.Fatal(err)
	}
	st.Close()
	resp, err := broker.Client(f.brokers).DeleteGroups(t.Context(), &kafka.DeleteGroupsRequest{GroupIDs: []string{f.group}})
	if err != nil || resp.Errors[f.group] != nil {
		t.Fatalf("delete group: %v %v", err, resp)
	}
	r2 := f.start()
	dt.Eventually(t, wait, "resync", func() bool { return r2.c.Stats.Resyncs.Load() == 1 })
	if v := r2.c.Snapshot().Version; v != 5 {
		t.Fatalf("version went from 5 to %d", v)
	}
	if m, _ := r2.st.Meta(); m.Version != 5 {
		t.Fatalf("stored version went from 5 to %d", m.Version)
	}
	if !strings.Contains(r2.c.LastError(), "back") {
		t.Fatalf("last error %q does not say the resync would go back", r2.c.LastError())
	}
}

// (a) dp.deltas ends inside an incomplete batch and no sync-gateway
// completes it: a new node applies the last complete version and becomes
// ready, then applies the batch once it is complete.
func TestResyncEndingInsideABatchBecomesReady(t *testing.T) {
	f := newFixture(t, nil)
	f.prod.Batch(dt.Put("services/a", `{"id":"a"}`))
	want := f.prod.Hash
	v2, _ := f.prod.Prepare(dt.Put("services/b", `{"id":"b"}`), dt.Put("services/c", `{"id":"c"}`))
	f.prod.Send(v2[0])

	r := f.start()
	f.ready(r)
	s := r.c.Snapshot()
	if s.Version != 1 || s.Hash != want || s.Len() != 1 {
		t.Fatalf("version %d hash %s entities %d, want version 1 with services/a only", s.Version, s.Hash, s.Len())
	}
	f.prod.Send(v2[1])
	f.converged(r)
}

// (b) The tail record of the log has a malformed header: the resync must
// not apply the half batch before it.
func TestResyncMalformedTailAppliesNoHalfBatch(t *testing.T) {
	f := newFixture(t, nil)
	f.prod.Batch(dt.Put("services/a", `{"id":"a"}`))
	want := f.prod.Hash
	v2, _ := f.prod.Prepare(dt.Put("services/b", `{"id":"b"}`), dt.Put("services/c", `{"id":"c"}`))
	bad := v2[1]
	bad.Headers = append([]kafka.Header(nil), bad.Headers...)
	for i, h := range bad.Headers {
		if h.Key == wire.HeaderCount {
			bad.Headers[i].Value = []byte("two")
		}
	}
	f.prod.Send(v2[0], bad)

	r := f.start()
	f.ready(r)
	s := r.c.Snapshot()
	if _, ok := s.Entity("services/b"); ok || s.Version != 1 || s.Hash != want {
		t.Fatalf("half of version 2 applied: version %d hash %s services/b present %v", s.Version, s.Hash, ok)
	}
	if r.c.Stats.BadRecords.Load() != 1 {
		t.Fatalf("bad records %d, want 1", r.c.Stats.BadRecords.Load())
	}
}

// (c) dp.deltas is deleted and created again, empty, while the node holds
// version 2: the node keeps serving version 2, says it is degraded, and
// rebuilds from the new topic once that holds a complete version.
func TestRecreatedEmptyTopicKeepsLastGoodConfig(t *testing.T) {
	f := newFixture(t, nil)
	r := f.start()
	f.recreateAfterTwoVersions(r)

	r2 := f.start()
	dt.Eventually(t, wait, "recreated topic noticed", func() bool { return r2.c.Degraded() != "" })
	s := r2.c.Snapshot()
	if !r2.c.Ready() || s.Version != 2 || s.Len() != 2 {
		t.Fatalf("ready %v version %d entities %d, want the last good configuration (version 2, 2 entities)", r2.c.Ready(), s.Version, s.Len())
	}
	if !strings.Contains(r2.c.Degraded(), "recreated") {
		t.Fatalf("degraded %q", r2.c.Degraded())
	}
	// The control plane publishes the new topic's history.
	f.prod = dt.NewProducer(t, f.brokers, f.topic)
	f.prod.Batch(dt.Put("services/z", `{"id":"z"}`))
	f.converged(r2)
	if got := keys(r2); len(got) != 1 || got[0] != "services/z" {
		t.Fatalf("keys %v", got)
	}
	if d := r2.c.Degraded(); d != "" {
		t.Fatalf("still degraded: %q", d)
	}
}

// A new node bootstrapping from a log whose newest configuration holds
// entities the proxy cannot use quarantines each of those records once,
// as read (key, value, headers, offset), with the reason's kind — the
// entities are examined when the resync builds its result, not record by
// record as they are read — and a superseded bad record takes no part.
func TestResyncQuarantinesTheResultsBadEntities(t *testing.T) {
	f := newFixture(t, nil)
	f.prod.Batch(dt.Put("services/old", `{"id":"old",`)) // 0: bad, superseded at 6
	f.prod.Batch(
		dt.Put("services/b", `{"id":"b","host":"b.internal"}`), // 1
		dt.Put("services/c", `{"id":"c",`),                     // 2: not JSON
		dt.Put("services/d", `{"id":"d","port":"eighty"}`),     // 3: fails the service decoder
		dt.Put("widgets/w", `{"id":"w"}`),                      // 4: unknown type
		dt.Put("nokey", `{"id":"n"}`),                          // 5: not type/id
	)
	f.prod.Batch(dt.Put("services/old", `{"id":"old"}`)) // 6
	r := f.start()
	f.converged(r)
	got := dt.ReadAll(t, f.brokers, f.dlq(), 4)
	want := []struct {
		key, value string
		offset     int64
		kind       string
	}{
		{"services/c", `{"id":"c",`, 2, "entity"},
		{"services/d", `{"id":"d","port":"eighty"}`, 3, "entity"},
		{"widgets/w", `{"id":"w"}`, 4, "type"},
		{"nokey", `{"id":"n"}`, 5, "key"},
	}
	for i, w := range want {
		f.checkDLQ(got[i], w.key, w.value, w.offset, w.kind)
		if v := dt.Header(got[i], wire.HeaderVersion); v != "2" {
			t.Errorf("dlq record %s: header %s = %q, want the original record's 2", w.key, wire.HeaderVersion, v)
		}
	}
	if n := r.c.Stats.Quarantined.Load(); n != 4 {
		t.Fatalf("quarantined %d records, want 4", n)
	}
	if _, ok := r.c.Snapshot().Service("d"); ok {
		t.Fatal("an undecodable service is proxied")
	}

	// A later resync (lost group offset) reads them again without
	// quarantining them twice.
	dt.Eventually(t, wait, "offset committed", func() bool { return r.c.CommittedOffset() == 7 })
	r.stop()
	resp, err := broker.Client(f.brokers).DeleteGroups(t.Context(), &kafka.DeleteGroupsRequest{GroupIDs: []string{f.group}})
	if err != nil || resp.Errors[f.group] != nil {
		t.Fatalf("delete group: %v %v", err, resp)
	}
	r2 := f.start()
	dt.Eventually(t, wait, "resync", func() bool { return r2.c.Stats.Resyncs.Load() == 1 })
	f.prod.Batch(dt.Put("services/e", `{"id":"e"}`))
	f.converged(r2)
	if n := r2.c.Stats.Quarantined.Load(); n != 0 {
		t.Fatalf("the second resync quarantined %d records again", n)
	}
}
