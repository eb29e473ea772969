package proxy

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/router"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
)

func hostPort(t testing.TB, url string) (string, string) {
	h, p, err := net.SplitHostPort(strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

func newProxy(t testing.TB, ents map[string]string) *httptest.Server {
	m := map[string][]byte{}
	for k, v := range ents {
		m[k] = []byte(v)
	}
	s, errs := snapshot.Build(1, m)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	px := httptest.NewServer(New(slog.New(slog.NewJSONHandler(io.Discard, nil)), func() *snapshot.Snapshot { return s }, nil))
	t.Cleanup(px.Close)
	return px
}

func TestUpstreamWeightedRoundRobinAndRetries(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	mk := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hits[name]++
			mu.Unlock()
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s", name, body)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := mk("a"), mk("b")
	ah, ap := hostPort(t, a.URL)
	bh, bp := hostPort(t, b.URL)
	dead := httptest.NewServer(http.NotFoundHandler())
	dh, dp := hostPort(t, dead.URL)
	dead.Close()
	px := newProxy(t, map[string]string{
		"services/s":  `{"id":"s","host":"pool.internal","port":80,"retries":3}`,
		"routes/r":    `{"id":"r","paths":["/"],"service":{"id":"s"}}`,
		"upstreams/u": `{"id":"u","name":"pool.internal"}`,
		"targets/ta":  fmt.Sprintf(`{"id":"ta","target":"%s:%s","weight":300,"upstream":{"id":"u"}}`, ah, ap),
		"targets/tb":  fmt.Sprintf(`{"id":"tb","target":"%s:%s","weight":100,"upstream":{"id":"u"}}`, bh, bp),
		"targets/td":  fmt.Sprintf(`{"id":"td","target":"%s:%s","weight":100,"upstream":{"id":"u"}}`, dh, dp),
		"targets/t0":  fmt.Sprintf(`{"id":"t0","target":"%s:%s","weight":0,"upstream":{"id":"u"}}`, dh, dp),
	})
	for i := range 50 {
		payload := fmt.Sprintf("payload-%d", i)
		resp, err := http.Post(px.URL+"/x", "text/plain", strings.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasSuffix(string(b), " "+payload) {
			t.Fatalf("status %d %q: the dead target was not retried with the body", resp.StatusCode, b)
		}
	}
	// 50 requests over weights 300:100:100 (the dead target's share is
	// retried on the next target in the rotation).
	if hits["a"] < 29 || hits["b"] < 9 || hits["a"]+hits["b"] != 50 {
		t.Fatalf("hits %v", hits)
	}
}

func TestProxyEdgeCases(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up "+r.URL.Path) }))
	defer up.Close()
	h, p := hostPort(t, up.URL)
	px := newProxy(t, map[string]string{
		"services/s":   fmt.Sprintf(`{"id":"s","host":%q,"port":%s}`, h, p),
		"services/off": fmt.Sprintf(`{"id":"off","host":%q,"port":%s,"enabled":false}`, h, p),
		"routes/pub":   `{"id":"pub","paths":["/public"],"strip_path":false,"service":{"id":"s"}}`,
		"routes/tls":   `{"id":"tls","paths":["/secure"],"protocols":["https"],"service":{"id":"s"}}`,
		"routes/off":   `{"id":"off","paths":["/off"],"service":{"id":"off"}}`,
		"routes/none":  `{"id":"none","paths":["/none"]}`,
	})
	cases := []struct {
		path string
		code int
		body string
	}{
		{"/public/a", 200, "up /public/a"},
		{"/public/../admin", 404, `{"message":"no Route matched with those values"}`},
		{"/public//./a", 200, "up /public/a"},
		{"/secure", 426, `{"message":"Please use HTTPS protocol"}`},
		{"/off", 503, `{"message":"no Service found with those values"}`},
		{"/none", 503, `{"message":"no Service found with those values"}`},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			req, _ := http.NewRequest("GET", px.URL, nil)
			req.URL.Opaque = c.path // send the path as is, unclean
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.code || strings.TrimSpace(string(b)) != c.body {
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, b, c.code, c.body)
			}
		})
	}
}

func TestUpstreamPath(t *testing.T) {
	cases := []struct {
		svcPath, matched, req string
		strip                 bool
		want                  string
	}{
		{"", "/api", "/api/users", true, "/users"},
		{"", "/api", "/api", true, "/"},
		{"/base", "/api", "/api/users", true, "/base/users"},
		{"/base/", "/api", "/api/users", true, "/base/users"},
		{"/base", "/api", "/api/users", false, "/base/api/users"},
		{"/base", "/api", "/api", true, "/base"},
		{"/base", "/api", "/apiv2", true, "/base/v2"},
		{"", "", "/x", true, "/x"},
	}
	for _, c := range cases {
		t.Run(c.svcPath+"|"+c.req, func(t *testing.T) {
			m := &router.Match{Route: &router.Route{StripPath: c.strip}, MatchedPath: c.matched}
			if got := upstreamPath(c.svcPath, m, c.req); got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

// BenchmarkProxyOverhead compares the latency of calling an upstream
// directly and through the proxy (same client, same upstream, keep-alive),
// reporting p50 and p99 in microseconds.
func BenchmarkProxyOverhead(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	h, p := hostPort(b, up.URL)
	px := newProxy(b, map[string]string{
		"services/s": fmt.Sprintf(`{"id":"s","host":%q,"port":%s}`, h, p),
		"routes/r":   `{"id":"r","paths":["/api"],"hosts":["api.test"],"service":{"id":"s"}}`,
	})
	for _, c := range []struct{ name, url string }{{"direct", up.URL + "/users"}, {"proxied", px.URL + "/api/users"}} {
		b.Run(c.name, func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			req, _ := http.NewRequest("GET", c.url, nil)
			req.Host = "api.test"
			var lat []time.Duration
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}
