//go:build integration

package consumer

import (
	"strconv"
	"strings"
	"sync"
	"testing"

	dt "github.com/deltaplane/deltaplane/services/dataplane/internal/deltatest"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// checkDLQ verifies a quarantined record: original key and value, where it
// came from, which node, and the reason's kind.
func (f *fixture) checkDLQ(m kafka.Message, key, value string, offset int64, kind string) {
	f.t.Helper()
	if string(m.Key) != key || string(m.Value) != value {
		f.t.Errorf("dlq record %q=%q, want %q=%q", m.Key, m.Value, key, value)
	}
	for h, want := range map[string]string{
		wire.HeaderDLQTopic:     f.topic,
		wire.HeaderDLQPartition: "0",
		wire.HeaderDLQOffset:    strconv.FormatInt(offset, 10),
		wire.HeaderDLQNode:      f.node,
	} {
		if got := dt.Header(m, h); got != want {
			f.t.Errorf("dlq record %s: header %s = %q, want %q", key, h, got, want)
		}
	}
	if r := dt.Header(m, wire.HeaderDLQReason); !strings.HasPrefix(r, kind+": ") || len(r) <= len(kind)+2 {
		f.t.Errorf("dlq record %s: reason %q, want %q and a detail", key, r, kind+": ...")
	}
}

func TestMalformedRecordsAreQuarantined(t *testing.T) {
	f := newFixture(t, nil)
	r := f.start()
	dt.Eventually(t, wait, "ready", r.c.Ready)
	f.prod.Batch(dt.Put("services/a", `{"id":"a"}`)) // offset 0
	newer := wire.DeltaHeader{Schema: 2, Version: 2, Index: 0, Count: 1}
	bad := wire.DeltaHeader{Schema: wire.SchemaVersion, Version: 2, Index: 3, Count: 1}
	f.prod.Send(
		kafka.Message{Key: []byte("services/x"), Value: []byte(`{"id":"x"}`)},                                                                           // 1: no dp-* headers
		kafka.Message{Key: []byte("services/y"), Value: []byte(`{"id":"y"}`), Headers: newer.Headers()},                                                 // 2: newer schema
		kafka.Message{Key: []byte("services/z"), Value: []byte(`{"id":"z"}`), Headers: bad.Headers()},                                                   // 3: index beyond count
		kafka.Message{Key: []byte("services/w"), Value: []byte(`{"id":"w"}`), Headers: []kafka.Header{{Key: wire.HeaderVersion, Value: []byte("two")}}}, // 4
	)
	// A batch whose entities the proxy cannot use: applied whole (the
	// content hash covers them), quarantined record by record.
	f.prod.Batch(
		dt.Put("services/b", `{"id":"b","host":"b.internal"}`), // 5
		dt.Put("services/c", `{"id":"c",`),                     // 6: not JSON
		dt.Put("services/d", `{"id":"d","port":"eighty"}`),     // 7: fails the service decoder
		dt.Put("widgets/w", `{"id":"w"}`),                      // 8: unknown type
		dt.Put("nokey", `{"id":"n"}`),                          // 9: not type/id
	)
	f.prod.Batch(dt.Put("services/e", `{"id":"e"}`)) // 10: later records still apply
	f.converged(r)

	got := dt.ReadAll(t, f.brokers, f.dlq(), 8)
	want := []struct {
		key, value string
		offset     int64
		kind       string
	}{
		{"services/x", `{"id":"x"}`, 1, "decode"},
		{"services/y", `{"id":"y"}`, 2, "schema"},
		{"services/z", `{"id":"z"}`, 3, "batch"},
		{"services/w", `{"id":"w"}`, 4, "decode"},
		{"services/c", `{"id":"c",`, 6, "entity"},
		{"services/d", `{"id":"d","port":"eighty"}`, 7, "entity"},
		{"widgets/w", `{"id":"w"}`, 8, "type"},
		{"nokey", `{"id":"n"}`, 9, "key"},
	}
	for i, w := range want {
		f.checkDLQ(got[i], w.key, w.value, w.offset, w.kind)
	}
	if n := r.c.Stats.Quarantined.Load(); n != 8 {
		t.Fatalf("quarantined = %d, want 8", n)
	}
	if q := r.c.LastQuarantine(); !strings.Contains(q, "offset 9") || !strings.Contains(q, "key: ") {
		t.Fatalf("last quarantine %q", q)
	}
	s := r.c.Snapshot()
	if _, ok := s.Service("d"); ok {
		t.Fatal("an undecodable service is proxied")
	}
	if _, ok := s.Service("b"); !ok {
		t.Fatal("the good part of the batch is missing")
	}
	if r.c.Degraded() != "" {
		t.Fatalf("malformed records made the node degraded: %s", r.c.Degraded())
	}

	// A restart followed by a resync reads the records again without
	// quarantining them twice.
	dt.Eventually(t, wait, "offset committed", func() bool { return r.c.CommittedOffset() == 11 })
	r.stop()
	m, _ := f.prod.Prepare(dt.Put("services/gap", `{"id":"gap"}`))
	f.prod.Send(m...)
	_, _ = f.prod.Prepare() // a version lost on the way
	f.prod.Batch(dt.Put("services/f", `{"id":"f"}`))
	r2 := f.start()
	dt.Eventually(t, wait, "gap resync", func() bool { return r2.c.Stats.Resyncs.Load() == 1 })
	f.prod.Batch(dt.Put("services/g", `{"id":"g"}`))
	dt.Eventually(t, wait, "last batch applied", func() bool { return r2.c.Snapshot().Version == f.prod.Version })
	if n := r2.c.Stats.Quarantined.Load(); n != 0 {
		t.Fatalf("restart and resync quarantined %d records again", n)
	}
}

func TestPoisonBatchIsQuarantinedAfterThreeAttempts(t *testing.T) {
	f := newFixture(t, nil)
	var mu sync.Mutex
	calls := 0
	blocked, release := make(chan struct{}), make(chan struct{})
	// First process: the batch of version 2 panics, and on its second
	// attempt the process goes away while handling it.
	f.hook = func(version uint64) {
		if version != 2 {
			return
		}
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 2 {
			close(blocked)
			<-release
		}
		panic("test plugin exploded on version 2")
	}
	r := f.start()
	f.prod.Batch(dt.Put("services/a", `{"id":"a"}`)) // offset 0
	f.converged(r)
	f.prod.Batch(dt.Put("services/b", `{"id":"b"}`), dt.Put("routes/rb", `{"id":"rb","paths":["/b"],"service":{"id":"b"}}`)) // offsets 1, 2
	<-blocked
	if n, err := r.st.Attempts(1); err != nil || n != 2 {
		t.Fatalf("attempts stored while the second runs = %d, %v; want 2", n, err)
	}
	if r.c.Stats.Panics.Load() != 1 || !strings.Contains(r.c.LastError(), "exploded") {
		t.Fatalf("panics %d last error %q", r.c.Stats.Panics.Load(), r.c.LastError())
	}
	if v := r.c.Snapshot().Version; v != 1 || !r.c.Ready() {
		t.Fatalf("serving version %d ready %v while the batch fails; want the last good one", v, r.c.Ready())
	}
	r.cancel()
	close(release)
	r.stop()

	// Second process: the batch still panics; the attempts of the first
	// process count, so it is tried once more and then quarantined.
	calls2 := 0
	f.hook = func(version uint64) {
		if version == 2 {
			mu.Lock()
			calls2++
			mu.Unlock()
			panic("test plugin exploded again")
		}
	}
	r2 := f.start()
	got := dt.ReadAll(t, f.brokers, f.dlq(), 2)
	f.checkDLQ(got[0], "services/b", `{"id":"b"}`, 1, "poison")
	f.checkDLQ(got[1], "routes/rb", `{"id":"rb","paths":["/b"],"service":{"id":"b"}}`, 2, "poison")
	if reason := dt.Header(got[0], wire.HeaderDLQReason); !strings.Contains(reason, "3 attempts") || !strings.Contains(reason, "exploded again") {
		t.Fatalf("reason %q", reason)
	}
	dt.Eventually(t, wait, "degraded", func() bool { return r2.c.Degraded() != "" })
	mu.Lock()
	if calls2 != 1 {
		t.Fatalf("second process tried the batch %d times, want 1 (3 attempts in all)", calls2)
	}
	mu.Unlock()
	// The skipped content converges from the topic (resync), and later
	// changes apply.
	f.converged(r2)
	if _, ok := r2.c.Snapshot().Router().Get("rb"); !ok {
		t.Fatal("route of the poison batch missing after the resync")
	}
	f.prod.Batch(dt.Put("services/c", `{"id":"c"}`))
	f.converged(r2)
	if r2.c.Stats.PoisonBatches.Load() != 1 || r2.c.Stats.Quarantined.Load() != 2 || !r2.c.Ready() {
		t.Fatalf("poison %d quarantined %d ready %v", r2.c.Stats.PoisonBatches.Load(), r2.c.Stats.Quarantined.Load(), r2.c.Ready())
	}
	if d := r2.c.Degraded(); !strings.Contains(d, "version 2") {
		t.Fatalf("degraded %q", d)
	}
}

// TestQuarantineWaitsForTheDLQ: while Kafka refuses the quarantine write
// the consumer retries and does not read past the record (the last good
// configuration stays live); once the write succeeds it goes on.
func TestQuarantineWaitsForTheDLQ(t *testing.T) {
	f := newFixture(t, nil)
	f.dlqTopic = f.topic + "late.dlq" // does not exist yet (no auto-creation)
	r := f.start()
	f.prod.Batch(dt.Put("services/a", `{"id":"a"}`))
	f.prod.Send(kafka.Message{Key: []byte("services/x"), Value: []byte(`{"id":"x"}`)}) // offset 1
	f.prod.Batch(dt.Put("services/b", `{"id":"b"}`))
	dt.Eventually(t, wait, "quarantine refused and retried", func() bool {
		return strings.Contains(r.c.LastError(), "refused") && strings.Contains(r.c.LastError(), "attempt 2")
	})
	if v := r.c.Snapshot().Version; v != 1 || r.c.Stats.RecordsConsumed.Load() != 2 || !r.c.Ready() {
		t.Fatalf("read past the record awaiting quarantine: version %d, consumed %d", v, r.c.Stats.RecordsConsumed.Load())
	}
	dt.CreateDLQ(t, f.brokers, f.dlqTopic)
	f.converged(r)
	got := dt.ReadAll(t, f.brokers, f.dlqTopic, 1)
	f.checkDLQ(got[0], "services/x", `{"id":"x"}`, 1, "decode")
	if n := r.c.Stats.Quarantined.Load(); n != 1 {
		t.Fatalf("quarantined %d", n)
	}
}
