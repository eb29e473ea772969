package health_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/health"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/proxy"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
)

// backend is a real upstream server on 127.0.0.1 whose health endpoint
// and traffic can be made to fail, or to hang, while the test runs.
type backend struct {
	name  string
	addr  string
	fail  atomic.Bool // /health and traffic answer 500
	hang  atomic.Bool // /health answers after 2 s
	hits  atomic.Int64
	probe atomic.Int64
}

func newBackend(t *testing.T, name string) *backend {
	b := &backend{name: name}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			b.probe.Add(1)
			if b.hang.Load() {
				select {
				case <-time.After(2 * time.Second):
				case <-r.Context().Done():
				}
			}
			if b.fail.Load() {
				w.WriteHeader(500)
			}
			return
		}
		b.hits.Add(1)
		if b.fail.Load() {
			w.WriteHeader(500)
		}
		io.WriteString(w, b.name)
	}))
	t.Cleanup(srv.Close)
	b.addr = strings.TrimPrefix(srv.URL, "http://")
	return b
}

type live struct {
	p atomic.Pointer[snapshot.Snapshot]
}

func (l *live) get() *snapshot.Snapshot { return l.p.Load() }

// apply applies writes ("key", "json" pairs; "" deletes) and tells the
// checker, as the consumer's listeners are told.
func (l *live) apply(t *testing.T, c *health.Checker, kv ...string) {
	cur := l.get()
	reset := cur == nil
	if cur == nil {
		cur = snapshot.Empty()
	}
	var w []snapshot.Write
	for i := 0; i < len(kv); i += 2 {
		var v []byte
		if kv[i+1] != "" {
			v = []byte(kv[i+1])
		}
		w = append(w, snapshot.Write{Key: kv[i], Value: v})
	}
	next, events, errs := cur.Apply(cur.Version+1, w)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	l.p.Store(next)
	if reset {
		c.Update(next, nil, true)
	} else {
		c.Update(next, events, false)
	}
}

func target(id, addr string) string {
	return fmt.Sprintf(`{"id":%q,"target":%q,"weight":100,"upstream":{"id":"u"}}`, id, addr)
}

func upstream(healthchecks string) string {
	return `{"id":"u","name":"pool.internal","healthchecks":` + healthchecks + `}`
}

// setup starts a proxy in front of upstream "pool.internal" with targets
// a and b.
func setup(t *testing.T, healthchecks string, a, b *backend) (*live, *health.Checker, string) {
	log := slog.New(slog.DiscardHandler)
	c := health.New(log)
	t.Cleanup(c.Close)
	var cfg live
	cfg.apply(t, c,
		"services/s", `{"id":"s","host":"pool.internal","port":80,"retries":0}`,
		"routes/r", `{"id":"r","paths":["/"],"service":{"id":"s"}}`,
		"upstreams/u", upstream(healthchecks),
		"targets/a", target("a", a.addr),
		"targets/b", target("b", b.addr),
	)
	px := proxy.New(log, cfg.get, nil)
	px.UseHealth(c)
	srv := httptest.NewServer(px)
	t.Cleanup(srv.Close)
	return &cfg, c, srv.URL
}

// healthOf is a target's health in the checker's view.
func healthOf(c *health.Checker, s *snapshot.Snapshot, addr string) string {
	for _, u := range c.View(s) {
		for _, tg := range u.Targets {
			if tg.Target == addr {
				return tg.Health
			}
		}
	}
	return "absent"
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// call sends n requests through the proxy and returns the bodies by
// backend name (and the statuses of the others).
func call(t *testing.T, url string, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		resp, err := http.Get(url + "/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			got[string(b)]++
		} else {
			got[fmt.Sprint(resp.StatusCode)]++
		}
	}
	return got
}

// TestActiveChecks: probes of http_path take a target out after
// unhealthy.http_failures failed probes (or unhealthy.timeouts probes
// timing out), and bring it back after healthy.successes good ones; the
// balancer sends nothing to it in between.
func TestActiveChecks(t *testing.T) {
	a, b := newBackend(t, "A"), newBackend(t, "B")
	cfg, c, url := setup(t, `{"active":{"http_path":"/health","timeout":0.2,
		"healthy":{"interval":0.05,"successes":2},
		"unhealthy":{"interval":0.05,"http_failures":2,"timeouts":2}}}`, a, b)

	if got := call(t, url, 10); got["A"] != 5 || got["B"] != 5 {
		t.Fatalf("both healthy: %v", got)
	}
	eventually(t, "B probed", func() bool { return b.probe.Load() >= 2 })

	for _, fault := range []struct {
		name string
		set  func(bool)
	}{{"500 on /health", b.fail.Store}, {"/health times out", b.hang.Store}} {
		t.Run(fault.name, func(t *testing.T) {
			fault.set(true)
			eventually(t, "B unhealthy", func() bool { return healthOf(c, cfg.get(), b.addr) == health.Unhealthy })
			hits := b.hits.Load()
			if got := call(t, url, 10); got["A"] != 10 {
				t.Fatalf("B unhealthy: %v", got)
			}
			if b.hits.Load() != hits {
				t.Fatal("traffic reached the unhealthy target")
			}
			fault.set(false)
			eventually(t, "B healthy again", func() bool { return healthOf(c, cfg.get(), b.addr) == health.Healthy })
			if got := call(t, url, 10); got["B"] == 0 {
				t.Fatalf("B back: %v", got)
			}
		})
	}

	// Every target unhealthy: Kong's 503.
	a.fail.Store(true)
	b.fail.Store(true)
	eventually(t, "both unhealthy", func() bool {
		return healthOf(c, cfg.get(), a.addr) == health.Unhealthy && healthOf(c, cfg.get(), b.addr) == health.Unhealthy
	})
	resp, err := http.Get(url + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "failure to get a peer from the ring-balancer") {
		t.Fatalf("all unhealthy: %d %s", resp.StatusCode, body)
	}
	v := c.View(cfg.get())
	if len(v) != 1 || v[0].Health != health.Unhealthy || !v[0].Active || v[0].Passive || v[0].Unhealthy != 2 {
		t.Fatalf("view %+v", v)
	}
}

// TestPassiveChecks: proxied responses with a status in
// passive.unhealthy.http_statuses and connection failures take a target
// out; with active probes of unhealthy targets only (Kong's usual set-up
// with passive checks), it comes back once it answers its probes again.
func TestPassiveChecks(t *testing.T) {
	a, b := newBackend(t, "A"), newBackend(t, "B")
	cfg, c, url := setup(t, `{"passive":{"unhealthy":{"http_failures":3,"tcp_failures":1}},
		"active":{"http_path":"/health","healthy":{"interval":0,"successes":1},"unhealthy":{"interval":0.05}}}`, a, b)
	b.fail.Store(true)
	// Round-robin: B answers every other request with 500 until its 3rd.
	got := call(t, url, 10)
	if got["500"] != 3 || got["A"] != 7 {
		t.Fatalf("passive: %v", got)
	}
	if h := healthOf(c, cfg.get(), b.addr); h != health.Unhealthy {
		t.Fatalf("B %s", h)
	}
	b.fail.Store(false)
	eventually(t, "B back by its probes", func() bool { return healthOf(c, cfg.get(), b.addr) == health.Healthy })
	if got := call(t, url, 10); got["B"] != 5 {
		t.Fatalf("B back: %v", got)
	}

	// A connection failure: a target whose server is gone, added by a
	// delta, leaves after one refused connection (tcp_failures 1).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	cfg.apply(t, c, "targets/g", target("g", gone))
	eventually(t, "the new target is tracked", func() bool { return healthOf(c, cfg.get(), gone) == health.Healthy })
	got = call(t, url, 9)
	if got["502"] != 1 || got["A"]+got["B"] != 8 {
		t.Fatalf("with a dead target: %v", got)
	}
	if h := healthOf(c, cfg.get(), gone); h != health.Unhealthy {
		t.Fatalf("dead target %s", h)
	}

	// Health checks removed by a delta: every target takes traffic again.
	cfg.apply(t, c, "upstreams/u", upstream("null"), "targets/g", "")
	b.fail.Store(true)
	if got := call(t, url, 10); got["500"] != 5 {
		t.Fatalf("without checks: %v", got)
	}
	if h := healthOf(c, cfg.get(), b.addr); h != health.HealthchecksOff {
		t.Fatalf("without checks: B %s", h)
	}
}

func TestParseDefaults(t *testing.T) {
	c, err := health.Parse([]byte(`{"active":{"healthy":{"interval":5}},"passive":{"unhealthy":{"http_statuses":[500]}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.ActiveOn() || c.PassiveOn() || c.Active.HTTPPath != "/" || c.Active.Timeout != 1 || c.Active.Concurrency != 10 ||
		fmt.Sprint(c.Active.Healthy.HTTPStatuses) != "[200 302]" || fmt.Sprint(c.Passive.Unhealthy.HTTPStatuses) != "[500]" {
		t.Fatalf("%+v", c)
	}
	if _, err := health.Parse([]byte(`{"active":"x"}`)); err == nil {
		t.Fatal("want an error")
	}
}

// TestThreshold: under healthchecks.threshold percent of healthy weight,
// the whole upstream takes no traffic (Kong's balancer), and takes it
// again once enough targets are back.
func TestThreshold(t *testing.T) {
	a, b := newBackend(t, "A"), newBackend(t, "B")
	cfg, c, url := setup(t, `{"threshold":60,"active":{"http_path":"/health",
		"healthy":{"interval":0.05,"successes":1},"unhealthy":{"interval":0.05,"http_failures":1}}}`, a, b)
	if got := call(t, url, 4); got["A"] != 2 || got["B"] != 2 {
		t.Fatalf("healthy: %v", got)
	}
	b.fail.Store(true)
	eventually(t, "B unhealthy", func() bool { return healthOf(c, cfg.get(), b.addr) == health.Unhealthy })
	if got := call(t, url, 4); got["503"] != 4 {
		t.Fatalf("50%% healthy under a 60%% threshold: %v", got)
	}
	if v := c.View(cfg.get()); v[0].Health != health.Unhealthy || v[0].Threshold != 60 {
		t.Fatalf("view %+v", v)
	}
	b.fail.Store(false)
	eventually(t, "B healthy", func() bool { return healthOf(c, cfg.get(), b.addr) == health.Healthy })
	if got := call(t, url, 4); got["A"] != 2 || got["B"] != 2 {
		t.Fatalf("back: %v", got)
	}
}
