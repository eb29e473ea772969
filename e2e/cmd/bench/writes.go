package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/deltaplane/deltaplane/e2e/cluster"
)

// writeResult is the Admin API's single-entity write throughput: clients
// closed-loop PATCHing routes (one transaction each) for a while.
type writeResult struct {
	Clients   int     `json:"clients"`
	Seconds   float64 `json:"seconds"`
	Writes    int     `json:"writes"`
	PerSecond float64 `json:"per_second"`
	Latency   latency `json:"latency_ms"`
}

// writes runs n clients, each PATCHing its own routes back to back for d.
func (b *bench) writes(ctx context.Context, c *cluster.Cluster, n int, d time.Duration) writeResult {
	wr := writeResult{Clients: n}
	u := units(b.cfg.Entities)
	var mu sync.Mutex
	var all []float64
	errs := 0
	var wg sync.WaitGroup
	t0 := time.Now()
	end := t0.Add(d)
	for k := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []float64
			bad := 0
			for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
				unit := (k + i*n) % u
				s := time.Now()
				err := expect(ctx, 200, "PATCH", fmt.Sprintf("%s/routes/svc-%06d-r1", c.Admin, unit),
					fmt.Sprintf(`{"tags":["env-bench","write-%d-%d"]}`, k, i))
				if err != nil {
					bad++
					continue
				}
				local = append(local, ms(time.Since(s)))
			}
			mu.Lock()
			all = append(all, local...)
			errs += bad
			mu.Unlock()
		}()
	}
	wg.Wait()
	wr.Seconds = time.Since(t0).Seconds()
	wr.Writes = len(all)
	wr.PerSecond = float64(len(all)) / wr.Seconds
	wr.Latency = summarize(all)
	wr.Latency.Errors = errs
	return wr
}
