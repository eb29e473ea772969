//go:build integration

package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	dt "github.com/deltaplane/deltaplane/services/dataplane/internal/deltatest"
)

// TestComponentRateLimitCountersSurviveUpdates: on a data plane busy with
// traffic, a burst of configuration updates that do not touch the
// rate-limiting plugin's limits (other routes and services, a consumer,
// the plugin's own tags) keeps its local counters: exactly the limit's
// worth of requests passes, however the updates interleave with them.
func TestComponentRateLimitCountersSurviveUpdates(t *testing.T) {
	env, prod := baseEnv(t)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	defer upstream.Close()
	srv := upstream.URL
	d := startDP(t, env)
	const limit, minRequests, updates = 60, 150, 120
	plugin := func(tag int) dt.KV {
		return dt.Put("plugins/rl", fmt.Sprintf(`{"id":"rl","name":"rate-limiting","route":{"id":"r"},"enabled":true,"tags":["t%d"],`+
			`"config":{"day":%d,"limit_by":"ip","policy":"local","fault_tolerant":true,"hide_client_headers":false,"error_code":429,"error_message":"API rate limit exceeded","redis":{}}}`, tag, limit))
	}
	prod.Batch(dt.Put("services/s", svcJSON("s", srv, "null", "60000")), dt.Put("routes/r", `{"id":"r","paths":["/rl"],"service":{"id":"s"}}`), plugin(0))
	dt.Eventually(t, wait, "version 1", func() bool { return d.version(t) == 1 })

	// Traffic runs from before the first update until every update is
	// applied (and at least minRequests were sent): a counter reset at any
	// point lets more than limit requests through.
	var passed, refused, sent atomic.Int64
	var applied atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for sent.Add(1) <= minRequests || !applied.Load() {
				code, _, _ := get(t, "http://"+d.proxy+"/rl", nil)
				switch code {
				case 204:
					passed.Add(1)
				case 429:
					refused.Add(1)
				default:
					t.Errorf("status %d", code)
				}
			}
		})
	}
	var last uint64
	for i := 1; i <= updates; i++ {
		switch i % 4 {
		case 0:
			last = prod.Batch(plugin(i)) // the plugin itself, limits kept
		case 1:
			last = prod.Batch(dt.Put(fmt.Sprintf("routes/o%d", i), fmt.Sprintf(`{"id":"o%d","paths":["/o%d"],"service":{"id":"s"}}`, i, i)))
		case 2:
			last = prod.Batch(dt.Put(fmt.Sprintf("consumers/c%d", i), fmt.Sprintf(`{"id":"c%d","username":"u%d"}`, i, i)))
		case 3:
			last = prod.Batch(dt.Put("services/s", svcJSON("s", srv, "null", fmt.Sprint(60000+i))))
		}
	}
	dt.Eventually(t, wait, "every update applied", func() bool { return d.version(t) == last })
	applied.Store(true)
	wg.Wait()
	if passed.Load() != limit || passed.Load()+refused.Load() < minRequests {
		t.Fatalf("%d passed and %d refused with a limit of %d a day across %d updates", passed.Load(), refused.Load(), limit, updates)
	}
	t.Logf("%d requests during %d updates: %d passed, %d refused", passed.Load()+refused.Load(), updates, passed.Load(), refused.Load())
	// After the burst the counter is still the same one: the next request
	// is refused.
	if code, _, hdr := get(t, "http://"+d.proxy+"/rl", nil); code != 429 || hdr.Get("X-RateLimit-Remaining-Day") != "0" {
		t.Fatalf("after the updates: %d, remaining %q", code, hdr.Get("X-RateLimit-Remaining-Day"))
	}
}
