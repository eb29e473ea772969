//go:build integration

package consumer

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	dt "github.com/deltaplane/deltaplane/services/dataplane/internal/deltatest"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

var bootstrapSizes = flag.String("bootstrap-sizes", "30000,100000", "entity counts of BenchmarkBootstrap")

// BenchmarkBootstrap is a new data plane (empty store, no group offset)
// reading a dp.deltas topic of the bench's configuration from the real
// broker until it is ready: fetch, follower, resync, store, snapshot.
// Run it with -cpuprofile to see where the time goes.
func BenchmarkBootstrap(b *testing.B) {
	for _, n := range sizes(b, *bootstrapSizes) {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			brokers := dt.Brokers(b)
			topic := dt.Prefix(b) + wire.TopicDeltas
			dt.CreateTopic(b, brokers, topic, nil)
			dt.CreateDLQ(b, brokers, topic+wire.DLQSuffix)
			recs, size := benchLog(n)
			w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, BatchSize: 1000, BatchBytes: 8 << 20, BatchTimeout: 5 * time.Millisecond, RequiredAcks: kafka.RequireAll}
			msgs := make([]kafka.Message, 0, 1000)
			for i, r := range recs {
				msgs = append(msgs, kafka.Message{Key: []byte(r.key), Value: r.value, Headers: r.h.Headers()})
				if len(msgs) == cap(msgs) || i == len(recs)-1 {
					if err := w.WriteMessages(b.Context(), msgs...); err != nil {
						b.Fatal(err)
					}
					msgs = msgs[:0]
				}
			}
			w.Close()
			want := recs[len(recs)-1].h
			recs = nil
			log := slog.New(slog.NewJSONHandler(io.Discard, nil))
			i := 0
			for b.Loop() {
				i++
				st, err := store.Open(b.TempDir(), store.Options{})
				if err != nil {
					b.Fatal(err)
				}
				c, err := New(Config{Brokers: brokers, Topic: topic, Group: fmt.Sprintf("%s-g%d", topic, i), ProbeInterval: time.Second, Logger: log}, st)
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(b.Context())
				done := make(chan error, 1)
				go func() { done <- c.Run(ctx) }()
				for !c.WaitVersion(ctx, want.Version) {
				}
				b.StopTimer()
				if s := c.Snapshot(); s.Hash != want.Hash || s.Len() != n {
					b.Fatalf("ready with %d entities hashing to %s, want %d and %s", s.Len(), s.Hash, n, want.Hash)
				}
				cancel()
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				st.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(size)/(1<<20), "config-MiB")
		})
	}
}
