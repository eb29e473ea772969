//go:build integration

package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

func setupB(b *testing.B) *env {
	// setup only needs testing.TB features that *testing.T has; run it
	// under a throw-away T-like wrapper by using b directly.
	return setupTB(b)
}

// BenchmarkSingleEntityWrite measures POST /services throughput with 8
// concurrent clients, and the latency from sending the request to the
// change event arriving on cp.changes (p50, p99).
func BenchmarkSingleEntityWrite(b *testing.B) {
	e := setupB(b)
	sent := sync.Map{}  // name -> time.Time
	acked := sync.Map{} // name -> time.Time of the 201
	recv := sync.Map{}  // name -> time.Time the event arrived
	var lat []time.Duration
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var received atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: e.brokers, Topic: e.topic, Partition: 0, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 500 * time.Millisecond})
		defer r.Close()
		_ = r.SetOffset(kafka.FirstOffset)
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				return
			}
			ev, err := wire.DecodeChange(m.Key, m.Value)
			if err != nil {
				continue
			}
			var name string
			if i := bytes.Index(ev.Entity, []byte(`"name":"`)); i >= 0 {
				rest := ev.Entity[i+8:]
				name = string(rest[:bytes.IndexByte(rest, '"')])
			}
			if name == "bench-warmup" {
				received.Store(1)
				continue
			}
			if t0, ok := sent.Load(name); ok {
				recv.Store(name, time.Now())
				mu.Lock()
				lat = append(lat, time.Since(t0.(time.Time)))
				mu.Unlock()
				received.Add(1)
			}
		}
	}()
	var n atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	// Warm up: the first event shows the relay leads and the reader reads.
	warm := func() {
		sent.Store("bench-warmup", time.Now())
		resp, err := client.Post(e.url+"/services", "application/json", strings.NewReader(`{"name":"bench-warmup","host":"bench.internal"}`))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		testenv.Eventually(b, time.Minute, "warm-up event", func() bool { return received.Load() == 1 })
		received.Store(0)
		sent.Delete("bench-warmup")
		mu.Lock()
		lat = lat[:0]
		mu.Unlock()
	}
	warm()
	b.SetParallelism(4) // 4 x GOMAXPROCS clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			name := fmt.Sprintf("bench-%d", n.Add(1))
			sent.Store(name, time.Now())
			resp, err := client.Post(e.url+"/services", "application/json", strings.NewReader(`{"name":"`+name+`","host":"bench.internal"}`))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 201 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
			acked.Store(name, time.Now())
		}
	})
	b.StopTimer()
	deadline := time.Now().Add(60 * time.Second)
	for received.Load() < n.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(lat) == 0 {
		b.Fatal("no event received")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-publish-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-publish-ms")
	b.ReportMetric(float64(len(lat)), "events")
	// From the 2xx to the event (the event can arrive before the client
	// has read the response: counted as 0).
	var afterAck []time.Duration
	recv.Range(func(k, v any) bool {
		if a, ok := acked.Load(k); ok {
			afterAck = append(afterAck, max(0, v.(time.Time).Sub(a.(time.Time))))
		}
		return true
	})
	if len(afterAck) > 0 {
		sort.Slice(afterAck, func(i, j int) bool { return afterAck[i] < afterAck[j] })
		b.ReportMetric(float64(afterAck[len(afterAck)/2].Microseconds())/1000, "p50-ack-to-event-ms")
		b.ReportMetric(float64(afterAck[len(afterAck)*99/100].Microseconds())/1000, "p99-ack-to-event-ms")
	}
}

// declarative30k is a configuration of 10k services, each with a route
// and a rate-limiting plugin: 30k entities.
func declarative30k(host string) string {
	var sb strings.Builder
	sb.WriteString(`{"_format_version":"3.0","services":[`)
	for i := range 10000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"name":"svc-%d","host":"%s","routes":[{"name":"route-%d","paths":["/svc-%d"]}],"plugins":[{"name":"rate-limiting","config":{"minute":%d}}]}`, i, host, i, i, 10+i%50)
	}
	sb.WriteString(`]}`)
	return sb.String()
}

// BenchmarkConfigImport30k measures POST /config of 30k entities into an
// empty configuration (one transaction, 30k outbox rows), and how long
// the relay takes to publish them.
func BenchmarkConfigImport30k(b *testing.B) {
	e := setupB(b)
	cfg := declarative30k("bench.internal")
	empty := `{"_format_version":"3.0"}`
	post := func(body string) {
		resp, err := http.Post(e.url+"/config", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 {
			b.Fatalf("POST /config = %d %s", resp.StatusCode, out)
		}
	}
	var publish time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		post(empty)
		waitPublished(b, e)
		b.StartTimer()
		t0 := time.Now()
		post(cfg)
		b.StopTimer()
		waitPublished(b, e)
		publish += time.Since(t0)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(30000*float64(b.N)/b.Elapsed().Seconds(), "entities/s")
	b.ReportMetric(publish.Seconds()/float64(b.N), "import+publish-s")
	b.ReportMetric(float64(len(cfg))/1e6, "body-MB")
}

func waitPublished(b *testing.B, e *env) {
	testenv.Eventually(b, 5*time.Minute, "outbox published", func() bool {
		var n int64
		e.db.Raw(`SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&n)
		return n == 0
	})
}
