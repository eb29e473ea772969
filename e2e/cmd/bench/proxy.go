package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/deltaplane/deltaplane/e2e/cluster"
)

// proxy measures proxy latency through a data plane, idle and while the
// configuration churns, and calling the upstream directly for reference.
func (b *bench) proxy(ctx context.Context, c *cluster.Cluster, dp *cluster.Dataplane, mr *modeResult) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"ok":true}`))
	})}
	go srv.Serve(l)
	defer srv.Close()
	up := "http://" + l.Addr().String()

	if err := expect(ctx, 201, "POST", c.Admin+"/services", `{"name":"bench-echo","url":"`+up+`"}`); err != nil {
		return err
	}
	if err := expect(ctx, 201, "POST", c.Admin+"/services/bench-echo/routes", `{"name":"bench-echo","paths":["/bench-echo"]}`); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		code, _, err := call(ctx, "GET", dp.Proxy+"/bench-echo", nil)
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench route not served by %s (%d, %v)", dp.NodeID, code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Idle and churn runs alternate in four slices each, so that whatever
	// else the machine does (compaction, vacuum) weighs on both alike.
	const slices = 4
	slice := b.cfg.ProxyDuration / slices
	var direct, idle, churn samples
	churned := 0
	for i := range slices {
		direct.add(loadgen(ctx, up+"/", b.cfg.Concurrency, slice/2))
		idle.add(loadgen(ctx, dp.Proxy+"/bench-echo", b.cfg.Concurrency, slice))
		n, l := b.underChurn(ctx, c, i, func() samples { return loadgen(ctx, dp.Proxy+"/bench-echo", b.cfg.Concurrency, slice) })
		churn.add(l)
		churned += n
	}
	mr.ProxyDirect, mr.ProxyIdle, mr.ProxyChurn, mr.ChurnDone = direct.summary(), idle.summary(), churn.summary(), churned
	return nil
}

// underChurn runs f while route changes are made at the churn rate, and
// returns how many changes were made and f's result.
func (b *bench) underChurn(ctx context.Context, c *cluster.Cluster, round int, f func() samples) (int, samples) {
	churnCtx, stopChurn := context.WithCancel(ctx)
	var wg sync.WaitGroup
	done := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Duration(float64(time.Second) / b.cfg.ChurnRate))
		defer t.Stop()
		for i := round * 1000; ; i++ {
			select {
			case <-churnCtx.Done():
				return
			case <-t.C:
			}
			unit := (i + units(b.cfg.Entities)/2) % units(b.cfg.Entities)
			if expect(churnCtx, 200, "PATCH", fmt.Sprintf("%s/routes/svc-%06d-r1", c.Admin, unit),
				fmt.Sprintf(`{"paths":["/svc-%06d/v1","/churn/%d"]}`, unit, i)) == nil {
				done++
			}
		}
	}()
	l := f()
	stopChurn()
	wg.Wait()
	return done, l
}

// samples are latencies in milliseconds and a count of failed requests.
type samples struct {
	ms     []float64
	errors int
}

func (s *samples) add(o samples) {
	s.ms = append(s.ms, o.ms...)
	s.errors += o.errors
}

func (s samples) summary() latency {
	l := summarize(s.ms)
	l.Errors = s.errors
	return l
}

// loadgen runs conc closed-loop clients against url for d and returns the
// latencies of the successful requests.
func loadgen(ctx context.Context, url string, conc int, d time.Duration) samples {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	end := time.Now().Add(d)
	var mu sync.Mutex
	var all []float64
	errs := 0
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []float64
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				resp, err := cl.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					mu.Lock()
					errs++
					mu.Unlock()
					continue
				}
				local = append(local, ms(time.Since(t0)))
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return samples{ms: all, errors: errs}
}
