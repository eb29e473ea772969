package status

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

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
	h := Handler(func() Status { return Status{Version: version.Load()} }, wait, prometheus.NewRegistry())
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
