//go:build integration

package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
)

type benchEnv struct {
	brokers []string
	prefix  string
	writer  *kafka.Writer
	cfg     Config
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	e := &benchEnv{brokers: testsupport.Kafka(b), prefix: "t-bench-" + testsupport.Name(b) + "."}
	topics := []string{e.prefix + wire.TopicChanges, e.prefix + wire.TopicDeltas, e.prefix + wire.TopicChanges + wire.DLQSuffix}
	if err := broker.EnsureTopics(context.Background(), e.brokers, 30*time.Second,
		broker.Compacted(topics[0], nil), broker.Compacted(topics[1], nil), broker.Log(topics[2])); err != nil {
		b.Fatal(err)
	}
	e.writer = &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: topics[0], RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, BatchSize: 1000}
	e.cfg = Config{Brokers: e.brokers, Prefix: e.prefix, Group: e.prefix + "sync", ClientID: e.prefix + "bench",
		Sync: Delta(), MaxRecordBytes: 1000000, SessionTimeout: 6 * time.Second}
	b.Cleanup(func() {
		e.writer.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := broker.Client(e.brokers)
		c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: topics})
		c.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{e.cfg.Group}})
	})
	return e
}

// start runs a pipeline until the benchmark ends.
func (e *benchEnv) start(b *testing.B) *Pipeline {
	b.Helper()
	p := New(e.cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), NewMetrics(prometheus.NewRegistry()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	})
	return p
}

func event(tx uint64, idx, count int, id string) kafka.Message {
	ent := fmt.Sprintf(`{"id":%q,"host":"example.internal","port":80,"protocol":"http","tx":%d}`, id, tx)
	v, _ := json.Marshal(wire.ChangeEvent{Schema: 1, Tx: tx, Index: idx, Count: count, Op: wire.OpUpsert,
		Type: wire.TypeService, ID: id, Entity: json.RawMessage(ent)})
	return kafka.Message{Key: []byte(wire.Key(wire.TypeService, id)), Value: v}
}

// BenchmarkSequencingThroughput: b.N events already on cp.changes (a
// backlog), in transactions of txSize events; measures how fast the
// pipeline turns them into acknowledged dp.deltas batches.
func BenchmarkSequencingThroughput(b *testing.B) {
	for _, txSize := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("tx=%d", txSize), func(b *testing.B) {
			e := newBenchEnv(b)
			var msgs []kafka.Message
			var tx uint64
			for i := 0; i < b.N; i += txSize {
				tx++
				n := min(txSize, b.N-i)
				for j := 0; j < n; j++ {
					msgs = append(msgs, event(tx, j, n, fmt.Sprintf("s%d", (i+j)%5000)))
				}
			}
			for c := range slices.Chunk(msgs, 1000) {
				if err := e.writer.WriteMessages(context.Background(), c...); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			start := time.Now()
			p := e.start(b)
			for p.Status().LastTx < tx {
				time.Sleep(time.Millisecond)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/el.Seconds(), "events/s")
			b.ReportMetric(float64(tx)/el.Seconds(), "versions/s")
		})
	}
}

// BenchmarkAddedLatency: one single-event transaction at a time on an idle
// pipeline holding a configuration of size entities; latency from
// cp.changes acknowledging the append to the output topic acknowledging the
// batch (incremental: the delta; full: the whole snapshot, after the
// coalescing quiet period SYNC_FULL_COALESCE: 50ms, the default, and 1ms to
// show the cost of the snapshot itself).
func BenchmarkAddedLatency(b *testing.B) {
	for _, c := range []struct {
		mode     string
		size     int
		coalesce time.Duration
	}{
		{wire.ModeIncremental, 0, 0}, {wire.ModeIncremental, 10000, 0},
		{wire.ModeFull, 0, 50 * time.Millisecond}, {wire.ModeFull, 10000, 50 * time.Millisecond},
		{wire.ModeFull, 10000, time.Millisecond},
	} {
		name := fmt.Sprintf("mode=%s/entities=%d", c.mode, c.size)
		if c.mode == wire.ModeFull {
			name += "/coalesce=" + c.coalesce.String()
		}
		b.Run(name, func(b *testing.B) { benchLatency(b, c.mode, c.size, c.coalesce) })
	}
}

func benchLatency(b *testing.B, mode string, size int, coalesce time.Duration) {
	e := newBenchEnv(b)
	if mode == wire.ModeFull {
		e.cfg.Sync = Full(coalesce, time.Second)
		if err := broker.EnsureTopics(context.Background(), e.brokers, 30*time.Second, broker.Compacted(e.prefix+wire.TopicFull, nil)); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			broker.Client(e.brokers).DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{e.prefix + wire.TopicFull}})
		})
	}
	var mu sync.Mutex
	acked := map[uint64]time.Time{}
	seen := make(chan uint64, 16)
	e.cfg.Observe = func(tx, _ uint64, at time.Time) {
		mu.Lock()
		acked[tx] = at
		mu.Unlock()
		seen <- tx
	}
	// the configuration: one transaction of size entities, then warm up
	var base []kafka.Message
	for i := 0; i < size; i++ {
		base = append(base, event(1, i, size, fmt.Sprintf("base%05d", i)))
	}
	if size == 0 {
		base = append(base, event(1, 0, 1, "warm"))
	}
	for c := range slices.Chunk(base, 1000) {
		if err := e.writer.WriteMessages(context.Background(), c...); err != nil {
			b.Fatal(err)
		}
	}
	e.start(b)
	for got := <-seen; got != 1; got = <-seen {
	}
	lat := make([]time.Duration, 0, b.N) // from the append's acknowledgement
	e2e := make([]time.Duration, 0, b.N) // from the start of the append
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tx := uint64(i + 2)
		sent := time.Now()
		if err := e.writer.WriteMessages(context.Background(), event(tx, 0, 1, fmt.Sprintf("s%d", i%1000))); err != nil {
			b.Fatal(err)
		}
		appended := time.Now()
		for got := <-seen; got != tx; got = <-seen {
		}
		mu.Lock()
		lat = append(lat, max(acked[tx].Sub(appended), 0))
		e2e = append(e2e, acked[tx].Sub(sent))
		mu.Unlock()
	}
	b.StopTimer()
	q := func(d []time.Duration, f float64) float64 {
		slices.Sort(d)
		return float64(d[int(f*float64(len(d)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(lat, 0.50), "p50-ms")
	b.ReportMetric(q(lat, 0.99), "p99-ms")
	b.ReportMetric(q(e2e, 0.50), "send-to-ack-p50-ms")
	b.ReportMetric(q(e2e, 0.99), "send-to-ack-p99-ms")
}
