//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/pipeline"
	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// env is one test's isolated slice of the shared broker.
type env struct {
	t       *testing.T
	brokers []string
	prefix  string
	group   string
	writer  *kafka.Writer
	client  *kafka.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	brokers := testsupport.Kafka(t)
	e := &env{t: t, brokers: brokers, prefix: "t-" + testsupport.Name(t) + ".", client: broker.Client(brokers)}
	e.group = e.prefix + "sync"
	topics := []string{e.prefix + wire.TopicChanges, e.prefix + wire.TopicDeltas, e.prefix + wire.TopicChanges + wire.DLQSuffix, e.prefix + wire.TopicFull}
	if err := broker.EnsureTopics(t.Context(), e.brokers, 30*time.Second,
		broker.Compacted(topics[0], nil), broker.Compacted(topics[1], nil), broker.Log(topics[2]), broker.Compacted(topics[3], nil)); err != nil {
		t.Fatal(err)
	}
	e.writer = &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: topics[0], RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchSize: 1000}
	t.Cleanup(func() {
		e.writer.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.client.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
		e.client.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{e.group}})
	})
	return e
}

func (e *env) getenv(extra map[string]string) func(string) string {
	vals := map[string]string{
		"KAFKA_BROKERS":        strings.Join(e.brokers, ","),
		"TOPIC_PREFIX":         e.prefix,
		"SYNC_GROUP":           e.group,
		"SYNC_LISTEN":          testsupport.FreeAddr(e.t),
		"SYNC_SESSION_TIMEOUT": "6s",
		"LOG_LEVEL":            "info",
	}
	for k, v := range extra {
		vals[k] = v
	}
	return func(k string) string { return vals[k] }
}

// gateway is a sync-gateway running in-process.
type gateway struct {
	addr   string
	cancel context.CancelFunc
	done   chan error
	logs   *testsupport.LogBuffer
}

func (e *env) start(extra map[string]string) *gateway {
	e.t.Helper()
	getenv := e.getenv(extra)
	ctx, cancel := context.WithCancel(context.Background())
	g := &gateway{addr: getenv("SYNC_LISTEN"), cancel: cancel, done: make(chan error, 1), logs: &testsupport.LogBuffer{}}
	go func() { g.done <- run(ctx, getenv, g.logs) }()
	e.t.Cleanup(func() {
		g.stop(e.t)
		if e.t.Failed() {
			e.t.Logf("gateway %s logs:\n%s", g.addr, g.logs.String())
		}
	})
	testsupport.Eventually(e.t, 30*time.Second, func() error {
		_, err := g.status()
		return err
	})
	return g
}

func (g *gateway) stop(t *testing.T) {
	t.Helper()
	if g.cancel == nil {
		return
	}
	g.cancel()
	g.cancel = nil
	select {
	case err := <-g.done:
		if err != nil {
			t.Errorf("run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("run did not return 30s after cancel")
	}
}

func (g *gateway) status() (pipeline.Status, error) {
	return getStatus("http://" + g.addr)
}

func getStatus(base string) (pipeline.Status, error) {
	var s pipeline.Status
	resp, err := http.Get(base + "/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return s, fmt.Errorf("status %d", resp.StatusCode)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// change builds a cp.changes record for an event.
func change(tx uint64, idx, count int, op wire.Op, typ, id, entity string) kafka.Message {
	ev := wire.ChangeEvent{Schema: 1, Tx: tx, Index: idx, Count: count, Op: op, Type: typ, ID: id}
	if entity != "" {
		ev.Entity = json.RawMessage(entity)
	}
	v, _ := json.Marshal(ev)
	return kafka.Message{Key: []byte(wire.Key(typ, id)), Value: v}
}

func upsert(tx uint64, idx, count int, typ, id string) kafka.Message {
	return change(tx, idx, count, wire.OpUpsert, typ, id, fmt.Sprintf(`{"id":%q,"name":"n-%s","tx":%d}`, id, id, tx))
}

func (e *env) produce(msgs ...kafka.Message) {
	e.t.Helper()
	if err := e.writer.WriteMessages(e.t.Context(), msgs...); err != nil {
		e.t.Fatal(err)
	}
}

// delta is one dp.deltas record.
type delta struct {
	Offset int64
	Key    string
	Value  []byte
	H      wire.DeltaHeader
	Repair bool // carries the dp-repair header
}

// readAll reads a topic from its first offset to its high water mark.
func (e *env) readAll(topic string) []kafka.Message {
	e.t.Helper()
	return readTopic(e.t, e.brokers, e.client, topic)
}

func readTopic(t testing.TB, brokers []string, c *kafka.Client, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first, end, err := broker.PartitionBounds(ctx, c, topic)
	if err != nil {
		t.Fatal(err)
	}
	if end <= first {
		return nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, MaxWait: 100 * time.Millisecond, MaxBytes: 16 << 20})
	defer r.Close()
	r.SetOffset(first)
	var out []kafka.Message
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %s: %v", topic, err)
		}
		out = append(out, m)
		if m.Offset+1 >= end {
			return out
		}
	}
}

func (e *env) deltas() []delta {
	e.t.Helper()
	return decodeDeltas(e.t, e.readAll(e.prefix+wire.TopicDeltas))
}

func decodeDeltas(t testing.TB, msgs []kafka.Message) []delta {
	t.Helper()
	out := make([]delta, len(msgs))
	for i, m := range msgs {
		h, err := wire.DecodeDeltaHeader(m.Headers)
		if err != nil {
			t.Fatalf("dp.deltas@%d: %v", m.Offset, err)
		}
		out[i] = delta{Offset: m.Offset, Key: string(m.Key), Value: m.Value, H: h}
		for _, x := range m.Headers {
			if x.Key == sequencer.HeaderRepair && string(x.Value) == "1" {
				out[i].Repair = true
			}
		}
	}
	return out
}

// history is what checkHistory derives from dp.deltas.
type history struct {
	Versions uint64            // highest complete version
	Tx       map[uint64]uint64 // version -> tx
	Final    map[string][]byte // entity table after the last version
	Hash     wire.Hash         // header hash of the last version
	Repairs  []uint64          // versions that are repair batches
}

// checkHistory asserts the dp.deltas history properties: every version's
// batch is complete (indices 0..count-1), versions appear in order 1..N
// without gaps, a version that appears more than once has identical records
// every time, no version regresses once a later one started, and the last
// hash equals the sum over the final entities. A repair batch (dp-repair)
// carries the previous version's tx and hash and changes no content.
func checkHistory(t testing.TB, ds []delta) history {
	t.Helper()
	type batch struct {
		recs   map[int]delta
		count  int
		tx     uint64
		hash   wire.Hash
		repair bool
	}
	versions := map[uint64]*batch{}
	var order []uint64 // first appearance order
	var maxSeen uint64
	for _, d := range ds {
		b := versions[d.H.Version]
		if b == nil {
			if d.H.Version != maxSeen+1 {
				t.Fatalf("offset %d: version %d starts after version %d (gap or regression)", d.Offset, d.H.Version, maxSeen)
			}
			maxSeen = d.H.Version
			b = &batch{recs: map[int]delta{}, count: d.H.Count, tx: d.H.Tx, hash: d.H.Hash, repair: d.Repair}
			versions[d.H.Version] = b
			order = append(order, d.H.Version)
		}
		if d.H.Count != b.count || d.H.Tx != b.tx || d.H.Hash != b.hash || d.Repair != b.repair {
			t.Fatalf("offset %d: version %d header %+v differs from earlier (count %d tx %d hash %s)", d.Offset, d.H.Version, d.H, b.count, b.tx, b.hash)
		}
		if prev, ok := b.recs[d.H.Index]; ok {
			if prev.Key != d.Key || !bytes.Equal(prev.Value, d.Value) {
				t.Fatalf("offset %d: version %d index %d republished with other content (%s vs %s)", d.Offset, d.H.Version, d.H.Index, prev.Key, d.Key)
			}
			continue
		}
		b.recs[d.H.Index] = d
	}
	h := history{Tx: map[uint64]uint64{}, Final: map[string][]byte{}}
	txSeen := map[uint64]uint64{}
	for _, v := range order {
		b := versions[v]
		if len(b.recs) != b.count {
			if v == maxSeen {
				break // trailing incomplete batch (crash mid-batch); not applied
			}
			t.Fatalf("version %d has %d of %d records", v, len(b.recs), b.count)
		}
		if b.repair {
			if v == 1 || b.tx != h.Tx[v-1] || b.hash != h.Hash {
				t.Fatalf("repair version %d carries tx %d hash %s; version %d has tx %d hash %s", v, b.tx, b.hash, v-1, h.Tx[v-1], h.Hash)
			}
			for i := 0; i < b.count; i++ {
				r := b.recs[i]
				if cur, ok := h.Final[r.Key]; ok != (len(r.Value) > 0) || !bytes.Equal(cur, r.Value) {
					t.Fatalf("repair version %d changes %s", v, r.Key)
				}
			}
			h.Repairs = append(h.Repairs, v)
		} else if pv, dup := txSeen[b.tx]; dup {
			t.Fatalf("tx %d published as version %d and %d", b.tx, pv, v)
		}
		txSeen[b.tx] = v
		for i := 0; i < b.count; i++ {
			r := b.recs[i]
			if len(r.Value) == 0 {
				delete(h.Final, r.Key)
			} else {
				h.Final[r.Key] = r.Value
			}
		}
		h.Versions, h.Tx[v], h.Hash = v, b.tx, b.hash
	}
	var sum wire.Hash
	for k, v := range h.Final {
		sum = sum.Add(wire.EntityHash(k, v))
	}
	if sum != h.Hash {
		t.Fatalf("last version %d carries hash %s, entities sum to %s", h.Versions, h.Hash, sum)
	}
	return h
}

func (e *env) waitVersion(g *gateway, version uint64) pipeline.Status {
	e.t.Helper()
	var s pipeline.Status
	testsupport.Eventually(e.t, 60*time.Second, func() error {
		var err error
		s, err = g.status()
		if err != nil {
			return err
		}
		if s.Version < version {
			return fmt.Errorf("version %d, want %d", s.Version, version)
		}
		return nil
	})
	return s
}
