//go:build integration

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
)

func TestSequencesChangesIntoVersionedBatches(t *testing.T) {
	e := newEnv(t)
	g := e.start(nil)
	e.produce(
		upsert(1, 0, 1, wire.TypeService, "s1"),
		// tx 2: three events, one batch
		upsert(2, 0, 3, wire.TypeService, "s2"),
		change(2, 1, 3, wire.OpUpsert, wire.TypeRoute, "r1", `{"id":"r1","service":{"id":"s2"}}`),
		change(2, 2, 3, wire.OpUpsert, wire.TypeRoute, "r2", `{"id":"r2","service":{"id":"s1"}}`),
		// tx 1 again: a relay duplicate
		upsert(1, 0, 1, wire.TypeService, "s1"),
		change(3, 0, 1, wire.OpDelete, wire.TypeRoute, "r2", ""),
		upsert(4, 0, 1, wire.TypeService, "s1"),
	)
	s := e.waitVersion(g, 4)
	ds := e.deltas()
	h := checkHistory(t, ds)
	if h.Versions != 4 || len(ds) != 6 {
		t.Fatalf("versions %d records %d, want 4 and 6", h.Versions, len(ds))
	}
	for v, tx := range h.Tx {
		if v != tx {
			t.Fatalf("version %d came from tx %d", v, tx)
		}
	}
	b2 := ds[1:4]
	for i, d := range b2 {
		if d.H.Version != 2 || d.H.Index != i || d.H.Count != 3 || d.H.Tx != 2 || d.H.Schema != 1 {
			t.Fatalf("tx 2 record %d header %+v", i, d.H)
		}
	}
	if d := ds[4]; d.Key != "routes/r2" || d.Value != nil || d.H.Version != 3 {
		t.Fatalf("delete: key %s value %q version %d, want a tombstone of routes/r2 at version 3", d.Key, d.Value, d.H.Version)
	}
	if string(ds[5].Value) != `{"id":"s1","name":"n-s1","tx":4}` {
		t.Fatalf("value %s is not exactly the event's entity", ds[5].Value)
	}
	if _, ok := h.Final["routes/r2"]; ok || len(h.Final) != 3 {
		t.Fatalf("final entities %v", h.Final)
	}
	if s.Hash != h.Hash.String() || s.LastTx != 4 || s.Entities != 3 || s.PublishedRecords != 6 || s.Consumed != 7 || s.Mode != "incremental" {
		t.Fatalf("status %+v; hash want %s", s, h.Hash)
	}
	testsupport.Eventually(t, 15*time.Second, func() error {
		s, err := g.status()
		if err == nil && !s.Active {
			err = errors.New("not active")
		}
		return err
	})
	for _, path := range []string{"/health", "/metrics"} {
		resp, err := http.Get("http://" + g.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
		if path == "/metrics" && !strings.Contains(string(body), "deltaplane_sync_version 4") {
			t.Fatalf("/metrics lacks deltaplane_sync_version 4:\n%s", body)
		}
	}
}

// produceServices produces transactions 1 to n, each the upsert of one
// service s<tx>.
func (e *env) produceServices(n uint64) {
	e.t.Helper()
	for tx := uint64(1); tx <= n; tx++ {
		e.produce(upsert(tx, 0, 1, wire.TypeService, fmt.Sprintf("s%d", tx)))
	}
}

func TestRestartResumesWithoutNewVersions(t *testing.T) {
	e := newEnv(t)
	g := e.start(nil)
	e.produceServices(5)
	before := e.waitVersion(g, 5)
	g.stop(t)

	// The relay re-sends tx 4 and 5 (at-least-once), then tx 6.
	e.produce(upsert(4, 0, 1, wire.TypeService, "s4"), upsert(5, 0, 1, wire.TypeService, "s5"))
	g = e.start(nil)
	s := e.waitVersion(g, 5)
	if s.Hash != before.Hash || s.LastTx != 5 {
		t.Fatalf("after restart %+v, before %+v", s, before)
	}
	e.produce(upsert(6, 0, 1, wire.TypeService, "s6"))
	e.waitVersion(g, 6)
	h := checkHistory(t, e.deltas())
	if h.Versions != 6 || len(e.deltas()) != 6 {
		t.Fatalf("versions %d records %d, want 6 and 6", h.Versions, len(e.deltas()))
	}

	// A new instance with a fresh group reads cp.changes from the start
	// but rebuilds from dp.deltas: nothing is published again.
	g.stop(t)
	e.group += "-fresh"
	g = e.start(nil)
	e.produce(upsert(7, 0, 1, wire.TypeService, "s7"))
	e.waitVersion(g, 7)
	if n := len(e.deltas()); n != 7 {
		t.Fatalf("records %d after a fresh group, want 7", n)
	}
	checkHistory(t, e.deltas())
}

func TestMalformedEventsAreQuarantined(t *testing.T) {
	e := newEnv(t)
	g := e.start(map[string]string{"SYNC_MAX_RECORD_BYTES": "2000"})
	big := fmt.Sprintf(`{"id":"big","pad":%q}`, strings.Repeat("x", 3000))
	bad := []struct {
		msg    kafka.Message
		reason string
	}{
		{kafka.Message{Key: []byte("services/x"), Value: []byte("{not json")}, "decode"},
		{change(2, 0, 1, wire.OpUpsert, "widgets", "w", `{"id":"w"}`), "type"},
		{kafka.Message{Key: []byte("services/other"), Value: upsert(3, 0, 1, wire.TypeService, "s3").Value}, "key"},
		{kafka.Message{Key: []byte("services/s4"), Value: bytes.Replace(upsert(4, 0, 1, wire.TypeService, "s4").Value, []byte(`"schema":1`), []byte(`"schema":2`), 1)}, "schema"},
		{change(5, 0, 1, wire.OpUpsert, wire.TypeService, "big", big), "oversized"},
		{change(6, 0, 1, wire.OpUpsert, wire.TypeRoute, "r", `{"id":"other"}`), "entity"},
	}
	e.produce(upsert(1, 0, 1, wire.TypeService, "s1"))
	for _, b := range bad {
		e.produce(b.msg)
	}
	e.produce(upsert(7, 0, 1, wire.TypeService, "s7"))
	e.waitVersion(g, 2)
	testsupport.Eventually(t, 30*time.Second, func() error {
		s, err := g.status()
		if err == nil && (s.Quarantined != uint64(len(bad)) || s.LastTx != 7) {
			err = fmt.Errorf("status %+v, want %d quarantined, last tx 7", s, len(bad))
		}
		return err
	})
	h := checkHistory(t, e.deltas())
	if h.Versions != 2 || h.Tx[2] != 7 {
		t.Fatalf("history %+v", h)
	}
	dlq := e.readAll(e.prefix + wire.TopicChanges + wire.DLQSuffix)
	if len(dlq) != len(bad) {
		t.Fatalf("dlq has %d records, want %d", len(dlq), len(bad))
	}
	for i, m := range dlq {
		hd := map[string]string{}
		for _, x := range m.Headers {
			hd[x.Key] = string(x.Value)
		}
		if !strings.HasPrefix(hd[wire.HeaderDLQReason], bad[i].reason+":") || hd[wire.HeaderDLQOffset] != fmt.Sprint(i+1) ||
			hd[wire.HeaderDLQTopic] != e.prefix+wire.TopicChanges || hd[wire.HeaderDLQPartition] != "0" {
			t.Fatalf("dlq record %d headers %v, want reason %s offset %d", i, hd, bad[i].reason, i+1)
		}
		if !bytes.Equal(m.Key, bad[i].msg.Key) || !bytes.Equal(m.Value, bad[i].msg.Value) {
			t.Fatalf("dlq record %d does not keep key and value", i)
		}
	}
}

func TestLargeTransactionIsOneChunkedBatch(t *testing.T) {
	e := newEnv(t)
	g := e.start(nil)
	const n = 3000
	pad := strings.Repeat("p", 1000)
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		id := fmt.Sprintf("s%05d", i)
		msgs[i] = change(1, i, n, wire.OpUpsert, wire.TypeService, id, fmt.Sprintf(`{"id":%q,"pad":%q}`, id, pad))
	}
	e.produce(msgs...)
	e.produce(upsert(2, 0, 1, wire.TypeService, "after"))
	e.waitVersion(g, 2)
	ds := e.deltas()
	h := checkHistory(t, ds)
	if h.Versions != 2 || len(ds) != n+1 || ds[0].H.Count != n || ds[n-1].H.Index != n-1 || len(h.Final) != n+1 {
		t.Fatalf("versions %d records %d final %d", h.Versions, len(ds), len(h.Final))
	}
}

func TestRefusesTopicWithWrongConfig(t *testing.T) {
	addr := newEnv(t) // checks DELTAPLANE_TEST_KAFKA
	prefix := addr.prefix + "x."
	topic := prefix + wire.TopicDeltas
	if err := broker.EnsureTopics(t.Context(), addr.brokers, 30*time.Second, broker.Log(topic)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		addr.client.DeleteTopics(t.Context(), &kafka.DeleteTopicsRequest{Topics: []string{topic, prefix + wire.TopicChanges, prefix + wire.TopicChanges + wire.DLQSuffix}})
	})
	getenv := addr.getenv(map[string]string{"TOPIC_PREFIX": prefix, "SYNC_START_TIMEOUT": "20s"})
	var logs bytes.Buffer
	err := run(t.Context(), getenv, &logs)
	if !errors.Is(err, broker.ErrTopicMismatch) || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("run = %v, want a refusal with ErrTopicMismatch", err)
	}
}

// TestRefusesUnderReplicatedTopic: dp.deltas has fewer copies than the
// sync-gateway is configured to require (cp.changes, absent, cannot even be
// created with them): it refuses at once, naming the numbers.
func TestRefusesUnderReplicatedTopic(t *testing.T) {
	addr := newEnv(t)
	prefix := addr.prefix + "r."
	topic := prefix + wire.TopicDeltas
	if err := broker.EnsureTopics(t.Context(), addr.brokers, 30*time.Second, broker.Compacted(topic, nil)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		addr.client.DeleteTopics(t.Context(), &kafka.DeleteTopicsRequest{Topics: []string{topic, prefix + wire.TopicChanges, prefix + wire.TopicChanges + wire.DLQSuffix}})
	})
	getenv := addr.getenv(map[string]string{"TOPIC_PREFIX": prefix, "SYNC_START_TIMEOUT": "20s", "KAFKA_REPLICATION_FACTOR": "4"})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := run(ctx, getenv, io.Discard)
	if !errors.Is(err, broker.ErrTopicMismatch) || !strings.Contains(err.Error(), topic+" has replication factor") || !strings.Contains(err.Error(), "configured to require 4") {
		t.Fatalf("run = %v, want a refusal naming dp.deltas' replication", err)
	}
}

// latestSnapshot reassembles the newest complete snapshot on dp.full.
func (e *env) latestSnapshot() (*wire.FullConfig, []kafka.Message) {
	e.t.Helper()
	msgs := e.readAll(e.prefix + wire.TopicFull)
	fa := wire.NewFullAssembler(0)
	var latest *wire.FullConfig
	for _, m := range msgs {
		if len(m.Value) == 0 {
			continue
		}
		h, err := wire.DecodeDeltaHeader(m.Headers)
		if err != nil {
			e.t.Fatalf("dp.full@%d: %v", m.Offset, err)
		}
		c, err := fa.Add(string(m.Key), m.Value, h)
		if err != nil {
			e.t.Fatalf("dp.full@%d: %v", m.Offset, err)
		}
		if c != nil {
			latest = c
		}
	}
	return latest, msgs
}

// waitSnapshot waits until the newest complete snapshot on dp.full is of
// version and returns it with every dp.full record.
func (e *env) waitSnapshot(version uint64) (snap *wire.FullConfig, recs []kafka.Message) {
	e.t.Helper()
	testsupport.Eventually(e.t, 30*time.Second, func() error {
		snap, recs = e.latestSnapshot()
		if snap == nil || snap.Version != version {
			return fmt.Errorf("no snapshot of version %d yet", version)
		}
		return nil
	})
	return snap, recs
}

func TestFullModePublishesWholeSnapshots(t *testing.T) {
	e := newEnv(t)
	full := map[string]string{"SYNC_MODE": "full"}
	g := e.start(full)
	model := map[string][]byte{}
	var msgs []kafka.Message
	// tx 1: 3000 services with incompressible padding: several chunks
	const n = 3000
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("s%05d", i)
		pad := make([]byte, 500)
		rand.Read(pad)
		ent := fmt.Sprintf(`{"id":%q,"pad":"%x"}`, id, pad)
		model[wire.Key(wire.TypeService, id)] = []byte(ent)
		msgs = append(msgs, change(1, i, n, wire.OpUpsert, wire.TypeService, id, ent))
	}
	// a burst of small transactions, a bad event and a delete
	for tx := uint64(2); tx <= 6; tx++ {
		m := upsert(tx, 0, 1, wire.TypeRoute, fmt.Sprintf("r%d", tx))
		msgs = append(msgs, m)
		model[string(m.Key)] = []byte(fmt.Sprintf(`{"id":"r%d","name":"n-r%d","tx":%d}`, tx, tx, tx))
	}
	msgs = append(msgs, kafka.Message{Key: []byte("services/x"), Value: []byte("{bad")})
	msgs = append(msgs, change(7, 0, 1, wire.OpDelete, wire.TypeRoute, "r2", ""))
	delete(model, "routes/r2")
	e.produce(msgs...)

	s := e.waitVersion(g, 7)
	snap, _ := e.waitSnapshot(7)
	ents, err := snap.Entities()
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(model) {
		t.Fatalf("snapshot has %d entities, want %d", len(ents), len(model))
	}
	var sum wire.Hash
	for k, v := range model {
		if !bytes.Equal(ents[k], v) {
			t.Fatalf("snapshot entity %s = %s, want %s", k, ents[k], v)
		}
		sum = sum.Add(wire.EntityHash(k, v))
	}
	if snap.Hash != sum.String() || s.Hash != sum.String() || snap.Tx != 7 || s.Quarantined != 1 || s.Mode != "full" {
		t.Fatalf("snapshot hash %s tx %d, status %+v; want hash %s", snap.Hash, snap.Tx, s, sum)
	}
	_, recs := e.latestSnapshot()
	chunks := 0
	for _, m := range recs {
		if v, _, _ := wire.ParseFullKey(string(m.Key)); v == 7 && len(m.Value) > 0 {
			chunks++
			if len(m.Value) > wire.FullChunkBytes {
				t.Fatalf("chunk of %d bytes", len(m.Value))
			}
		}
	}
	if chunks < 2 {
		t.Fatalf("snapshot 7 has %d chunks, want several", chunks)
	}

	// A transaction that changes nothing (r3 upserted with its current
	// bytes) publishes no snapshot; the next real change does.
	before := len(recs)
	e.produce(change(8, 0, 1, wire.OpUpsert, wire.TypeRoute, "r3", `{"id":"r3","name":"n-r3","tx":3}`))
	e.produce(upsert(9, 0, 1, wire.TypeService, "s9"))
	model["services/s9"] = []byte(`{"id":"s9","name":"n-s9","tx":9}`)
	e.waitVersion(g, 9)
	snap, recs = e.waitSnapshot(9)
	for _, m := range recs[before:] {
		if v, _, _ := wire.ParseFullKey(string(m.Key)); v == 8 {
			t.Fatalf("a snapshot of version 8 (hash unchanged) was published")
		}
	}
	sum = sum.Add(wire.EntityHash("services/s9", model["services/s9"]))
	if snap.Hash != sum.String() || len(mustEntities(t, snap)) != len(model) {
		t.Fatalf("snapshot 9 hash %s, want %s", snap.Hash, sum)
	}
	// tombstones for the chunks of snapshot 7 follow snapshot 9
	tomb := 0
	for _, m := range recs[before:] {
		if v, _, _ := wire.ParseFullKey(string(m.Key)); v == 7 && len(m.Value) == 0 {
			tomb++
		}
	}
	if tomb != chunks {
		t.Fatalf("%d tombstones for snapshot 7's %d chunks", tomb, chunks)
	}

	// Restart: state comes back from dp.full, nothing is re-published.
	g.stop(t)
	end := len(recs)
	g = e.start(full)
	s = e.waitVersion(g, 9)
	if s.Hash != sum.String() || s.Entities != len(model) {
		t.Fatalf("after restart %+v", s)
	}
	e.produce(change(10, 0, 1, wire.OpDelete, wire.TypeRoute, "r3", ""))
	e.waitVersion(g, 10)
	snap, recs = e.waitSnapshot(10)
	for _, m := range recs[end:] {
		if v, _, _ := wire.ParseFullKey(string(m.Key)); v == 9 && len(m.Value) > 0 {
			t.Fatal("snapshot 9 published again after the restart")
		}
	}
	if _, ok := mustEntities(t, snap)["routes/r3"]; ok {
		t.Fatal("deleted route still in snapshot 10")
	}
	if n := len(e.deltas()); n != 0 {
		t.Fatalf("full mode wrote %d records on dp.deltas", n)
	}
}

func mustEntities(t *testing.T, c *wire.FullConfig) map[string][]byte {
	t.Helper()
	ents, err := c.Entities()
	if err != nil {
		t.Fatal(err)
	}
	return ents
}

// Another instance publishing behind this one's back is noticed before the
// next publish: the state is rebuilt from dp.deltas and the transaction it
// already published is not published again.
func TestFencingRebuildsWhenAnotherInstanceWrote(t *testing.T) {
	e := newEnv(t)
	g := e.start(nil)
	e.produceServices(3)
	s := e.waitVersion(g, 3)
	if s.Rebuilds != 1 {
		t.Fatalf("rebuilds %d before the foreign write, want 1 (start)", s.Rebuilds)
	}

	// "Another instance" publishes tx 4 as version 4, exactly as this one would.
	ev := upsert(4, 0, 1, wire.TypeService, "s4")
	ent := []byte(`{"id":"s4","name":"n-s4","tx":4}`)
	prev, err := wire.ParseHash(s.Hash)
	if err != nil {
		t.Fatal(err)
	}
	h := wire.DeltaHeader{Schema: 1, Version: 4, Index: 0, Count: 1, Hash: prev.Add(wire.EntityHash(string(ev.Key), ent)), Tx: 4}
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: e.prefix + wire.TopicDeltas, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(t.Context(), kafka.Message{Key: ev.Key, Value: ent, Headers: h.Headers()}); err != nil {
		t.Fatal(err)
	}

	e.produce(ev, upsert(5, 0, 1, wire.TypeService, "s5"))
	s = e.waitVersion(g, 5)
	ds := e.deltas()
	hist := checkHistory(t, ds)
	if len(ds) != 5 || hist.Versions != 5 || hist.Tx[5] != 5 || s.Rebuilds < 2 || s.Hash != hist.Hash.String() {
		t.Fatalf("records %d, versions %d, status %+v", len(ds), hist.Versions, s)
	}
}

// A crash mid-batch leaves a version without its last record on dp.deltas;
// the next instance ignores it and publishes the same batch again, whole.
func TestTrailingIncompleteBatchIsRepublishedIdentically(t *testing.T) {
	e := newEnv(t)
	a := upsert(1, 0, 2, wire.TypeService, "a")
	b := upsert(1, 1, 2, wire.TypeService, "b")
	entA := []byte(`{"id":"a","name":"n-a","tx":1}`)
	entB := []byte(`{"id":"b","name":"n-b","tx":1}`)
	hash := wire.Hash(0).Add(wire.EntityHash("services/a", entA)).Add(wire.EntityHash("services/b", entB))
	h := wire.DeltaHeader{Schema: 1, Version: 1, Index: 0, Count: 2, Hash: hash, Tx: 1}
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: e.prefix + wire.TopicDeltas, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer w.Close()
	if err := w.WriteMessages(t.Context(), kafka.Message{Key: a.Key, Value: entA, Headers: h.Headers()}); err != nil {
		t.Fatal(err)
	}
	e.produce(a, b)
	g := e.start(nil)
	s := e.waitVersion(g, 1)
	ds := e.deltas()
	hist := checkHistory(t, ds)
	if len(ds) != 3 || ds[1].Key != "services/a" || ds[2].Key != "services/b" || hist.Versions != 1 || s.Hash != hash.String() {
		t.Fatalf("records %d (%v), status %+v", len(ds), ds, s)
	}
}

// failTB turns Fatalf into a recoverable panic so that the history checker
// itself can be tested.
type failTB struct{ testing.TB }

type failed string

func (failTB) Fatalf(format string, args ...any) { panic(failed(fmt.Sprintf(format, args...))) }
func (failTB) Helper()                           {}

func TestCheckHistoryDetectsBadHistories(t *testing.T) {
	rec := func(off int64, key, val string, v uint64, i, n int, tx uint64) delta {
		var value []byte
		if val != "" {
			value = []byte(val)
		}
		return delta{Offset: off, Key: key, Value: value, H: wire.DeltaHeader{Schema: 1, Version: v, Index: i, Count: n, Tx: tx,
			Hash: wire.EntityHash("services/a", []byte(`{"id":"a"}`))}}
	}
	ok := []delta{rec(0, "services/a", `{"id":"a"}`, 1, 0, 1, 1)}
	repair := func(d delta) delta { d.Repair = true; return d }
	cases := []struct {
		name string
		ds   []delta
		bad  bool
	}{
		{"good", ok, false},
		{"duplicate identical", append(ok, ok[0]), false},
		{"gap", []delta{rec(0, "services/a", `{"id":"a"}`, 2, 0, 1, 1)}, true},
		{"republished differently", append(ok, rec(1, "services/a", `{"id":"b"}`, 1, 0, 1, 1)), true},
		{"wrong hash", []delta{rec(0, "services/b", `{"id":"b"}`, 1, 0, 1, 1)}, true},
		{"one tx two versions", append(ok, rec(1, "services/a", `{"id":"a"}`, 2, 0, 1, 1)), true},
		{"repair", append(ok, repair(rec(1, "services/a", `{"id":"a"}`, 2, 0, 1, 1))), false},
		{"repair changing content", append(ok, repair(rec(1, "services/a", `{"id":"b"}`, 2, 0, 1, 1))), true},
		{"repair deleting", append(ok, repair(rec(1, "services/a", "", 2, 0, 1, 1))), true},
		{"repair with a new tx", append(ok, repair(rec(1, "services/a", `{"id":"a"}`, 2, 0, 1, 2))), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var msg failed
			func() {
				defer func() {
					if r := recover(); r != nil {
						msg = r.(failed)
					}
				}()
				checkHistory(failTB{t}, c.ds)
			}()
			if (msg != "") != c.bad {
				t.Fatalf("checkHistory failure = %q, want failure %v", msg, c.bad)
			}
		})
	}
}
