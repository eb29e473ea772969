//go:build e2e

package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/e2e/checker"
	"github.com/deltaplane/deltaplane/e2e/cluster"
	"github.com/deltaplane/deltaplane/e2e/faultproxy"
	"github.com/deltaplane/deltaplane/shared/testsupport"
)

// TestChaos runs the whole system (admin-api, two sync-gateways, three data
// planes, a private broker and a private Postgres, both behind fault
// proxies) under a randomized workload and a randomized schedule of
// overlapping faults, heals everything, and judges the history with the
// checker. CHAOS_SEED and CHAOS_DURATION choose the run (make chaos).
func TestChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano() % 1e9)
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	duration := 40 * time.Second
	if s := os.Getenv("CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("CHAOS_DURATION=%q: want a duration", s)
		}
		duration = d
	}
	t.Logf("chaos: seed %d, duration %s; replay with: make chaos SEED=%d DURATION=%s", seed, duration, seed, duration)
	rng := rand.New(rand.NewPCG(seed, 0x636861))

	k, kp := startChaosKafka(t)
	pg := startPrivatePostgres(t)
	pgp, err := faultproxy.Start(0, "127.0.0.1:"+strconv.Itoa(pg.port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pgp.Close)
	name := uniqueName(t)
	c, err := cluster.Start(t.Context(), cluster.Options{
		Name: name, Kafka: kp.Addr(), PostgresAdmin: pgDSN(pgp.Port(), "deltaplane"),
		BinDir: binDir, WorkDir: t.TempDir(), LogLevel: "info",
		// Faults are short: let a fenced or restarted sync-gateway hand
		// over quickly.
		Env: []string{"SYNC_SESSION_TIMEOUT=6s"},
	})
	s := &system{Cluster: c, t: t, kafka: kp.Addr()}
	if c != nil {
		t.Cleanup(c.Close)
		keepLogs(t, s, k)
	}
	if err != nil {
		t.Fatal(err)
	}
	sync2Port := testsupport.FreePort(t)
	sync2, err := c.Spawn("sync-gateway-2", "sync-gateway", fmt.Sprintf("SYNC_LISTEN=127.0.0.1:%d", sync2Port),
		"SYNC_GROUP="+name+"-sync", "SYNC_INSTANCE_ID="+name+"-sync-2")
	if err != nil {
		t.Fatal(err)
	}
	dps := []*dataplane{s.startDataplane("dp1"), s.startDataplane("dp2"), s.startDataplane("dp3")}
	statusURLs := []string{dps[0].Status, dps[1].Status, dps[2].Status}
	procs := []*cluster.Process{c.AdminProc, c.SyncProc, sync2, dps[0].Process, dps[1].Process, dps[2].Process}
	svCtx, svStop := context.WithCancel(t.Context())
	t.Cleanup(svStop)
	sv := supervise(t, svCtx, procs...)

	sampleCtx, stopSampling := context.WithCancel(t.Context())
	defer stopSampling()
	sampler := checker.Sample(sampleCtx, 50*time.Millisecond, statusURLs...)
	history := &checker.History{}
	truthDB, err := sql.Open("pgx", pgDSN(pg.port, c.DBName)) // directly, not through the proxy
	if err != nil {
		t.Fatal(err)
	}
	defer truthDB.Close()
	truth := func(ctx context.Context) (map[string][]byte, error) { return checker.ReadTruth(ctx, truthDB) }

	// The workload: 4-8 clients, bounded in requests and time.
	clients := 4 + rng.IntN(5)
	ctx, stopWork := context.WithTimeout(t.Context(), duration)
	defer stopWork()
	shared := &pool{imports: 1 + int(duration/time.Minute)}
	var wg sync.WaitGroup
	for i := range clients {
		w := &workClient{
			c:    &checker.Client{Base: c.Admin, History: history, ID: i + 1, HTTP: &http.Client{Timeout: 4 * time.Second}},
			rng:  rand.New(rand.NewPCG(seed, uint64(i+1))),
			pool: shared,
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 1500 && ctx.Err() == nil; n++ {
				w.step(ctx)
				pause := time.Duration(5+w.rng.IntN(40)) * time.Millisecond
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}()
	}

	// The faults: overlapping, each healing itself after a short hold.
	ch := &chaos{t: t, k: k, kp: kp, pg: pg, pgp: pgp, procs: procs}
	faultEnd := time.Now().Add(duration - 5*time.Second)
	time.Sleep(2 * time.Second) // some writes before the first fault
	for time.Now().Before(faultEnd) && t.Context().Err() == nil {
		kind := faultKinds[rng.IntN(len(faultKinds))]
		hold := time.Duration(500+rng.IntN(4500)) * time.Millisecond
		ch.inject(rng, kind, hold)
		time.Sleep(time.Duration(300+rng.IntN(2500)) * time.Millisecond)
	}
	wg.Wait()
	ch.healAll()
	healed := time.Now()
	events, counts := ch.summary()
	t.Logf("chaos: faults injected (%v):\n%s", counts, events)

	// Quiescence: the outbox drained, then every data plane equals Postgres.
	s.waitHealthy(c.Admin + "/health")
	testsupport.Eventually(t, 3*time.Minute, func() error {
		st, err := getStatus(c.Admin + "/status")
		if err != nil {
			return err
		}
		ob, _ := st["outbox"].(map[string]any)
		if ob == nil || num(ob, "backlog") != 0 {
			return fmt.Errorf("outbox %v", st["outbox"])
		}
		return nil
	})
	took, convErr := checker.Converge(t.Context(), 3*time.Minute, truth, statusURLs)
	if convErr == nil {
		t.Logf("chaos: converged %.1fs after the final heal (%.1fs of it after the outbox drained)", time.Since(healed).Seconds(), took.Seconds())
	}
	if duration >= 90*time.Second && convErr == nil {
		soloFaults(t, ch, rng, history, c.Admin, truth, statusURLs)
	}
	stopSampling()
	sampler.Wait()
	svStop()

	in := checker.Input{Ops: history.Ops(), Regressions: sampler.Regressions()}
	if in.Truth, err = truth(t.Context()); err != nil {
		t.Fatal(err)
	}
	if in.Views, err = checker.ReadViews(t.Context(), statusURLs); err != nil {
		t.Errorf("read data-plane content: %v", err)
	}
	if in.Quarantined, err = checker.Quarantined(t.Context(), kp.Addr(), c.Prefix); err != nil {
		t.Errorf("read quarantine topics: %v", err)
	}
	report := checker.Check(in)
	t.Logf("chaos: requests by outcome: %s", outcomeTable(in.Ops))
	t.Logf("chaos: %d clients, %d version samples, supervisor restarts %d", clients, sampler.Observed(), len(sv.exited()))
	t.Logf("chaos: verdict (seed %d): %s", seed, report)
	if convErr != nil {
		t.Errorf("seed %d: %v", seed, convErr)
	}
	if !report.OK() {
		t.Errorf("seed %d: the checker found violations; replay with make chaos SEED=%d DURATION=%s", seed, seed, duration)
	}
}

// soloFaults injects each kind of fault once, alone, with a write during
// it, and reports how long the data planes took to equal Postgres again
// after it healed.
func soloFaults(t *testing.T, ch *chaos, rng *rand.Rand, h *checker.History, admin string,
	truth func(context.Context) (map[string][]byte, error), statusURLs []string) {
	cl := &checker.Client{Base: admin, History: h, ID: 99, HTTP: &http.Client{Timeout: 4 * time.Second}}
	for _, kind := range faultKinds {
		ch.inject(rng, kind, 1500*time.Millisecond)
		id, n := newID(rng), fmt.Sprintf("solo-%s", kind)
		cl.Do(t.Context(), "POST", "/services", map[string]any{"id": id, "name": n, "host": n + ".internal"})
		ch.healAll()
		healed := time.Now()
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if op := cl.Do(t.Context(), "PATCH", "/services/"+id, map[string]any{"host": n + ".healed"}); op.Outcome == checker.OK || op.Status == 404 {
				break
			}
		}
		took, err := checker.Converge(t.Context(), 3*time.Minute, truth, statusURLs)
		if err != nil {
			t.Errorf("after %s alone: %v", kind, err)
			return
		}
		t.Logf("chaos: %s alone: converged %.1fs after it healed (%.1fs of polling)", kind, time.Since(healed).Seconds(), took.Seconds())
	}
}

// outcomeTable counts requests by method, collection, outcome and status.
func outcomeTable(ops []checker.Op) string {
	n := map[string]int{}
	for _, o := range ops {
		typ, _, _ := strings.Cut(o.Key, "/")
		if o.Kind == checker.Import {
			typ = "config"
		}
		n[fmt.Sprintf("%s %s %s/%d", o.Method, typ, o.Outcome, o.Status)]++
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %-50s %d", k, n[k])
	}
	return b.String()
}
