package status

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/prometheus/client_golang/prometheus"
)

func TestStatusWaitVersion(t *testing.T) {
	var version atomic.Uint64
	version.Store(3)
	applied := make(chan struct{})
	wait := func(ctx context.Context, v uint64) bool {
		for version.Load() < v {
			select {
			case <-applied:
			case <-ctx.Done():
				return false
			}
		}
		return true
	}
	h := Handler(func() Status { return Status{Version: version.Load()} }, wait, nil, prometheus.NewRegistry())
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(q string) (int, Status) {
		resp, err := http.Get(srv.URL + "/status" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s Status
		json.NewDecoder(resp.Body).Decode(&s)
		return resp.StatusCode, s
	}

	if code, s := get("?wait_version=2"); code != 200 || s.Version != 3 {
		t.Fatalf("already applied: %d %+v", code, s)
	}
	done := make(chan Status)
	go func() { _, s := get("?wait_version=4&timeout=30s"); done <- s }()
	select {
	case s := <-done:
		t.Fatalf("answered before version 4 was applied: %+v", s)
	case <-time.After(100 * time.Millisecond):
	}
	version.Store(4)
	close(applied)
	if s := <-done; s.Version != 4 {
		t.Fatalf("after apply: %+v", s)
	}
	if code, s := get("?wait_version=9&timeout=10ms"); code != 200 || s.Version != 4 {
		t.Fatalf("timeout answers with what is live: %d %+v", code, s)
	}
	if code, _ := get("?wait_version=x"); code != 400 {
		t.Fatalf("bad wait_version: %d", code)
	}
}

// TestReadyWhileDegraded: a degraded node keeps serving its last good
// configuration, so it stays ready and says it is degraded.
func TestReadyWhileDegraded(t *testing.T) {
	cases := []struct {
		name     string
		st       Status
		wantCode int
		wantBody map[string]any
	}{
		{"no configuration", Status{}, 503, map[string]any{"ready": false}},
		{"ready", Status{Ready: true, Version: 3}, 200, map[string]any{"ready": true, "version": float64(3), "degraded": false}},
		{"ready and degraded", Status{Ready: true, Version: 4, Degraded: true}, 200, map[string]any{"ready": true, "version": float64(4), "degraded": true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(Handler(func() Status { return tc.st }, nil, nil, prometheus.NewRegistry()))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/status/ready")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantCode)
			}
			for k, v := range tc.wantBody {
				if body[k] != v {
					t.Fatalf("%s = %v, want %v (body %v)", k, body[k], v, body)
				}
			}
		})
	}
}

func TestStatusConfig(t *testing.T) {
	view := wire.ContentView{NodeID: "n1", Version: 4, Hash: "00000000000000ff", Entities: map[string]string{"services/a": "ab"}}
	srv := httptest.NewServer(Handler(func() Status { return Status{} }, nil, func() wire.ContentView { return view }, prometheus.NewRegistry()))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/status/config")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%d %v", resp.StatusCode, err)
	}
	// The shape checkers read: wire.ContentView's field names.
	ents, _ := raw["entities"].(map[string]any)
	if raw["node_id"] != "n1" || raw["version"] != float64(4) || raw["hash"] != "00000000000000ff" || ents["services/a"] != "ab" || len(raw) != 4 {
		t.Fatalf("/status/config = %v", raw)
	}
}

func TestStatusUpstreams(t *testing.T) {
	view := []map[string]string{{"name": "pool.internal", "health": "UNHEALTHY"}}
	h := Handler(func() Status { return Status{} }, nil, nil, prometheus.NewRegistry(), Upstreams(func() any { return view }))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/status/upstreams")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data []map[string]string `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 || len(body.Data) != 1 || body.Data[0]["health"] != "UNHEALTHY" {
		t.Fatalf("%d %+v %v", resp.StatusCode, body, err)
	}
}
