//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/testsupport"
)

// A batch is atomic on the data plane: while one declarative import removes
// a service together with its routes, concurrent requests see either the old
// configuration (the upstream answers) or the new one (no route matches),
// never a route whose service is gone.
func TestRequestsDuringCascadeDeleteSeeOldOrNewConfig(t *testing.T) {
	s := newSystem(t)
	dp := s.startDataplane("dp1")
	up := upstream(t)
	config := func(withGone bool) map[string]any {
		services := []any{map[string]any{"name": "keep", "url": up.URL, "routes": []any{
			map[string]any{"name": "keep", "paths": []string{"/keep"}},
		}}}
		if withGone {
			var routes []any
			for i := range 20 {
				routes = append(routes, map[string]any{"name": fmt.Sprintf("gone-%d", i), "paths": []string{fmt.Sprintf("/gone%d", i)}})
			}
			services = append(services, map[string]any{"name": "gone", "url": up.URL, "routes": routes,
				"plugins": []any{map[string]any{"name": "rate-limiting", "config": map[string]any{"second": 100000}}}})
		}
		return map[string]any{"_format_version": "3.0", "services": services}
	}
	mustDo(t, 201, "POST", s.Admin+"/config", config(true))
	testsupport.Eventually(t, propagation, routesTo(dp, "/gone19/x", "/x"))

	var stop atomic.Bool
	var mu sync.Mutex
	seen := map[int]int{}
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; !stop.Load(); i++ {
				resp, err := client.Get(fmt.Sprintf("%s/gone%d/y", dp.Proxy, i%20))
				code := -1
				if err == nil {
					code = resp.StatusCode
					resp.Body.Close()
				}
				mu.Lock()
				seen[code]++
				mu.Unlock()
			}
		}()
	}
	mustDo(t, 201, "POST", s.Admin+"/config", config(false))
	testsupport.Eventually(t, propagation, notRouted(dp, "/gone19/x"))
	testsupport.Eventually(t, propagation, func() error { // the clients reach the new configuration too
		mu.Lock()
		defer mu.Unlock()
		if seen[404] == 0 {
			return fmt.Errorf("no client request has met the new configuration yet: %v", seen)
		}
		return nil
	})
	stop.Store(true)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for code, n := range seen {
		if code != 200 && code != 404 {
			t.Errorf("%d requests answered %d during the import (want only 200 from the old or 404 from the new configuration)", n, code)
		}
	}
	if seen[200] == 0 || seen[404] == 0 {
		t.Fatalf("requests saw %v: want both configurations", seen)
	}
	if err := routesTo(dp, "/keep/z", "/z")(); err != nil {
		t.Fatal(err)
	}
}
