package proxy_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin/keyauth"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin/ratelimit"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/proxy"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	_ "github.com/deltaplane/deltaplane/services/dataplane/sdk" // sets plugin.New
	"github.com/prometheus/client_golang/prometheus"
)

// BenchmarkProxyThroughput serves requests through the data plane's proxy
// handler and through a bare httputil.ReverseProxy to the same loopback
// upstream, with 16 keep-alive connections in flight (as wrk -c16 does), so
// that ns/op is the inverse of throughput and allocs/op, B/op count the
// whole process (client, proxy, upstream): the difference between a case and
// "bare" is what deltaplane adds per request.
//
//	go test -run '^$' -bench BenchmarkProxyThroughput -benchmem ./internal/proxy/
func BenchmarkProxyThroughput(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "http://"))
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))

	upURL, _ := url.Parse(up.URL)
	bare := httputil.NewSingleHostReverseProxy(upURL)
	bare.Transport = &http.Transport{MaxIdleConnsPerHost: 256}

	svc := fmt.Sprintf(`{"id":"s","host":%q,"port":%s}`, host, port)
	plain, errs := snapshot.Build(1, map[string][]byte{
		"services/s": []byte(svc),
		"routes/r":   []byte(`{"id":"r","name":"r","paths":["/api"],"service":{"id":"s"}}`),
	})
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	withPlugins, errs := snapshot.Build(1, map[string][]byte{
		"services/s":             []byte(svc),
		"routes/r":               []byte(`{"id":"r","name":"r","paths":["/api"],"service":{"id":"s"}}`),
		"consumers/c1":           []byte(`{"id":"c1","username":"alice"}`),
		"keyauth_credentials/k1": []byte(`{"id":"k1","key":"secret-1","consumer":{"id":"c1"}}`),
		"plugins/ka":             []byte(`{"id":"ka","name":"key-auth","route":{"id":"r"},"config":{"key_names":["apikey"]},"enabled":true}`),
		"plugins/rl":             []byte(`{"id":"rl","name":"rate-limiting","route":{"id":"r"},"config":{"second":1000000000,"limit_by":"consumer","policy":"local"},"enabled":true}`),
	})
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	// The latency histogram is observed as run.go does.
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "proxy_seconds", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"route"})
	observed := func(s *snapshot.Snapshot, access proxy.Access) http.Handler {
		px := proxy.New(log, func() *snapshot.Snapshot { return s }, access)
		px.ObserveLatency(func(route string, d time.Duration) { seconds.WithLabelValues(route).Observe(d.Seconds()) })
		return px
	}
	limiter := ratelimit.New(log)
	defer limiter.Close()
	reg, err := plugin.New(log, plugin.Options{Tracking: true}, keyauth.Plugin(), limiter.Plugin())
	if err != nil {
		b.Fatal(err)
	}

	for _, c := range []struct {
		name    string
		handler http.Handler
		path    string
	}{
		{"bare", bare, "/api/users"},
		{"route", observed(plain, nil), "/api/users"},
		{"key-auth+rate-limiting", reg.Wrap(observed(withPlugins, reg.Access)), "/api/users"}, // as the data plane serves it: with the response phase
	} {
		b.Run(c.name, func(b *testing.B) {
			srv := httptest.NewServer(c.handler)
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			defer client.CloseIdleConnections()
			b.SetParallelism(8) // 16 connections on 2 CPUs
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest("GET", srv.URL+c.path, nil)
				req.Header.Set("apikey", "secret-1")
				for pb.Next() {
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
