//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// upstream is a test upstream that says who it is and what it received.
func upstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", "e2e")
		json.NewEncoder(w).Encode(map[string]string{"path": r.URL.Path, "host": r.Host, "method": r.Method})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// routesTo reports nil once path answers from the upstream with the given
// upstream path, through the data plane's proxy.
func routesTo(dp *dataplane, path, wantUpstreamPath string) func() error {
	return func() error {
		resp, err := http.Get(dp.Proxy + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Upstream") != "e2e" {
			return fmt.Errorf("%s%s = %d (X-Upstream %q)", dp.Proxy, path, resp.StatusCode, resp.Header.Get("X-Upstream"))
		}
		var got map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			return err
		}
		if got["path"] != wantUpstreamPath {
			return fmt.Errorf("%s%s reached upstream path %q, want %q", dp.Proxy, path, got["path"], wantUpstreamPath)
		}
		return nil
	}
}

// notRouted reports nil once path answers Kong's 404 for no matching route.
func notRouted(dp *dataplane, path string) func() error {
	return func() error {
		resp, err := http.Get(dp.Proxy + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != 404 || body["message"] != "no Route matched with those values" {
			return fmt.Errorf("%s%s = %d %v, want 404 no Route matched", dp.Proxy, path, resp.StatusCode, body)
		}
		return nil
	}
}

func both(dps []*dataplane, f func(*dataplane) func() error) func() error {
	return func() error {
		for _, dp := range dps {
			if err := f(dp)(); err != nil {
				return err
			}
		}
		return nil
	}
}

const propagation = 30 * time.Second

func TestWalkingSkeleton(t *testing.T) {
	s := newSystem(t)
	dp1, dp2 := s.startDataplane("dp1"), s.startDataplane("dp2")
	dps := []*dataplane{dp1, dp2}
	up := upstream(t)

	svc := mustDo(t, 201, "POST", s.Admin+"/services", map[string]any{"name": "echo", "url": up.URL})
	if svc["host"] != "127.0.0.1" || svc["protocol"] != "http" || svc["id"] == "" {
		t.Fatalf("service = %v", svc)
	}
	mustDo(t, 201, "POST", s.Admin+"/services/echo/routes", map[string]any{"name": "r1", "paths": []string{"/e2e"}})

	t.Run("a new route reaches the upstream through both data planes", func(t *testing.T) {
		testsupport.Eventually(t, propagation, both(dps, func(dp *dataplane) func() error { return routesTo(dp, "/e2e/hello", "/hello") }))
	})

	t.Run("patched paths route and the old path answers 404", func(t *testing.T) {
		mustDo(t, 200, "PATCH", s.Admin+"/routes/r1", map[string]any{"paths": []string{"/moved"}})
		testsupport.Eventually(t, propagation, both(dps, func(dp *dataplane) func() error { return routesTo(dp, "/moved/x", "/x") }))
		testsupport.Eventually(t, propagation, both(dps, func(dp *dataplane) func() error { return notRouted(dp, "/e2e/hello") }))
	})

	t.Run("a deleted route answers 404", func(t *testing.T) {
		mustDo(t, 204, "DELETE", s.Admin+"/routes/r1", nil)
		testsupport.Eventually(t, propagation, both(dps, func(dp *dataplane) func() error { return notRouted(dp, "/moved/x") }))
	})

	t.Run("a restarted data plane resumes from its committed offset", func(t *testing.T) {
		mustDo(t, 201, "POST", s.Admin+"/services/echo/routes", map[string]any{"name": "r2", "paths": []string{"/again"}})
		testsupport.Eventually(t, propagation, both(dps, func(dp *dataplane) func() error { return routesTo(dp, "/again/1", "/1") }))
		before := statusDoc(t, dp1)

		dp1.Stop(syscall.SIGTERM)
		s.restart(dp1.Process)
		s.waitHealthy(dp1.Status + "/status/ready")

		after := statusDoc(t, dp1)
		if after["node_id"] != before["node_id"] || num(after, "version") != num(before, "version") || after["hash"] != before["hash"] {
			t.Fatalf("after restart %v, before %v", after, before)
		}
		if num(after, "records_consumed") != 0 || num(after, "duplicates_skipped") != 0 || num(after, "resyncs") != 0 {
			t.Fatalf("restart replayed history: %v", after)
		}
		testsupport.Eventually(t, propagation, routesTo(dp1, "/again/2", "/2"))

		// The next change is consumed as one new record, not a replay.
		mustDo(t, 201, "POST", s.Admin+"/services/echo/routes", map[string]any{"name": "r3", "paths": []string{"/third"}})
		testsupport.Eventually(t, propagation, both(dps, func(dp *dataplane) func() error { return routesTo(dp, "/third/3", "/3") }))
		got := statusDoc(t, dp1)
		if num(got, "records_consumed") != 1 || num(got, "duplicates_skipped") != 0 || num(got, "version") != num(before, "version")+1 {
			t.Fatalf("after one change: %v (before restart: %v)", got, before)
		}
	})

	t.Run("a bad POST answers 400 in Kong's shape and writes nothing", func(t *testing.T) {
		changes := s.Prefix + wire.TopicChanges
		testsupport.Eventually(t, propagation, func() error { // the relay has published everything so far
			if n := s.countRows("outbox WHERE published_at IS NULL"); n != 0 {
				return fmt.Errorf("%d outbox rows unpublished", n)
			}
			return nil
		})
		services, outbox, events := len(mustDo(t, 200, "GET", s.Admin+"/services", nil)["data"].([]any)), s.countRows("outbox"), highWaterMark(t, s.kafka, changes)

		cases := []struct{ name, body string }{
			{"missing required field", `{"name":"nohost"}`},
			{"unknown field", `{"name":"x1","host":"example.com","colour":"blue"}`},
			{"wrong type", `{"name":"x2","host":"example.com","port":"eighty"}`},
			{"malformed JSON", `{"name":"x3","host":`},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				r := do(t, "POST", s.Admin+"/services", c.body)
				if r.status != 400 {
					t.Fatalf("status %d %s, want 400", r.status, r.body)
				}
				e := r.json(t)
				msg, _ := e["message"].(string)
				name, _ := e["name"].(string)
				_, hasFields := e["fields"].(map[string]any)
				if msg == "" || name == "" || !hasFields || num(e, "code") == 0 {
					t.Fatalf("error %s lacks Kong's shape {message, name, fields, code}", r.body)
				}
			})
		}
		r := do(t, "POST", s.Admin+"/routes", `{"name":"bad-ref","paths":["/x"],"service":{"id":"6b9d2a45-67a5-4a5c-a2c4-8d3a86a0c6a1"}}`)
		if r.status != 400 || num(r.json(t), "code") != 4 {
			t.Fatalf("route to a missing service = %d %s, want 400 code 4", r.status, r.body)
		}

		if n := len(mustDo(t, 200, "GET", s.Admin+"/services", nil)["data"].([]any)); n != services {
			t.Fatalf("services: %d after bad writes, %d before", n, services)
		}
		if n := s.countRows("outbox"); n != outbox {
			t.Fatalf("outbox rows: %d after bad writes, %d before", n, outbox)
		}
		// A good write after the bad ones adds exactly its own event.
		mustDo(t, 201, "POST", s.Admin+"/services", map[string]any{"name": "good", "host": "example.com"})
		testsupport.Eventually(t, propagation, func() error {
			if got := highWaterMark(t, s.kafka, changes); got != events+1 {
				return fmt.Errorf("cp.changes end offset %d, want %d", got, events+1)
			}
			return nil
		})
	})
}
