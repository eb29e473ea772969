// Package deltatest helps tests play the sync-gateway: it creates isolated
// topics on the real Kafka named by DELTAPLANE_TEST_KAFKA and produces
// dp.deltas batches with correct (or deliberately wrong) headers.
package deltatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"sort"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// Brokers returns the test Kafka's brokers (DELTAPLANE_TEST_KAFKA); the
// test fails without them.
func Brokers(t testing.TB) []string { t.Helper(); return testsupport.Kafka(t) }

// Prefix returns a unique topic prefix for the test.
func Prefix(t testing.TB) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "t-dp-" + hex.EncodeToString(b) + "."
}

// CreateTopic creates a compacted one-partition topic with extra configs
// and deletes it when the test ends.
func CreateTopic(t testing.TB, brokers []string, name string, extra map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.EnsureTopics(ctx, brokers, 20*time.Second, broker.Compacted(name, extra)); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	t.Cleanup(func() { DeleteTopics(brokers, name) })
}

// DeleteTopics removes topics, ignoring errors.
func DeleteTopics(brokers []string, names ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = broker.Client(brokers).DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: names})
}

// KV is one entity write: Value nil is a delete (tombstone).
type KV struct {
	Key   string
	Value []byte
}

// Put and Del build KVs.
func Put(key, value string) KV { return KV{Key: key, Value: []byte(value)} }
func Del(key string) KV        { return KV{Key: key} }

// Producer plays the sync-gateway on one dp.deltas topic.
type Producer struct {
	t       testing.TB
	w       *kafka.Writer
	Version uint64
	State   map[string][]byte
	Hash    wire.Hash
}

// NewProducer writes to topic.
func NewProducer(t testing.TB, brokers []string, topic string) *Producer {
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	t.Cleanup(func() { w.Close() })
	return &Producer{t: t, w: w, State: map[string][]byte{}}
}

// Batch publishes the next version with the writes and returns it.
func (p *Producer) Batch(kvs ...KV) uint64 {
	p.t.Helper()
	msgs, v := p.Prepare(kvs...)
	p.Send(msgs...)
	return v
}

// Prepare advances the producer's state by one version and returns the
// records without sending them (tests may drop, reorder or corrupt them).
func (p *Producer) Prepare(kvs ...KV) ([]kafka.Message, uint64) {
	p.Version++
	for _, kv := range kvs {
		if old, ok := p.State[kv.Key]; ok {
			p.Hash = p.Hash.Sub(wire.EntityHash(kv.Key, old))
			delete(p.State, kv.Key)
		}
		if kv.Value != nil {
			p.State[kv.Key] = kv.Value
			p.Hash = p.Hash.Add(wire.EntityHash(kv.Key, kv.Value))
		}
	}
	msgs := make([]kafka.Message, len(kvs))
	for i, kv := range kvs {
		h := wire.DeltaHeader{Schema: wire.SchemaVersion, Version: p.Version, Index: i, Count: len(kvs), Hash: p.Hash, Tx: p.Version}
		msgs[i] = kafka.Message{Key: []byte(kv.Key), Value: kv.Value, Headers: h.Headers()}
	}
	return msgs, p.Version
}

// Send produces records as they are.
func (p *Producer) Send(msgs ...kafka.Message) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		p.t.Fatalf("produce: %v", err)
	}
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PublishFull writes a whole configuration to a dp.full topic the way the
// sync-gateway's full mode does, and returns its content hash.
func PublishFull(t testing.TB, brokers []string, topic string, version uint64, ents map[string]string) wire.Hash {
	t.Helper()
	cfg := wire.FullConfig{Schema: wire.SchemaVersion, Version: version, Tx: version, Config: map[string][]json.RawMessage{}}
	var h wire.Hash
	for _, k := range sortedKeys(ents) {
		typ, _, err := wire.SplitKey(k)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Config[typ] = append(cfg.Config[typ], json.RawMessage(ents[k]))
		h = h.Add(wire.EntityHash(k, []byte(ents[k])))
	}
	cfg.Hash = h.String()
	chunks, err := wire.EncodeFull(cfg)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]kafka.Message, len(chunks))
	for i, ch := range chunks {
		hd := wire.DeltaHeader{Schema: wire.SchemaVersion, Version: version, Index: i, Count: len(chunks), Hash: h, Tx: version}
		msgs[i] = kafka.Message{Key: []byte(wire.FullKey(version, i)), Value: ch, Headers: hd.Headers()}
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce full snapshot: %v", err)
	}
	return h
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// CreateDLQ creates a quarantine topic (delete policy) and deletes it when
// the test ends.
func CreateDLQ(t testing.TB, brokers []string, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.EnsureTopics(ctx, brokers, 20*time.Second, broker.Log(name)); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	t.Cleanup(func() { DeleteTopics(brokers, name) })
}

// ReadAll reads a one-partition topic from its start until it has n
// records, failing the test if they do not come within 30s.
func ReadAll(t testing.TB, brokers []string, topic string, n int) []kafka.Message {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out []kafka.Message
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %s: have %d of %d records: %v", topic, len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

// Header returns the value of a record header ("" when absent).
func Header(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
