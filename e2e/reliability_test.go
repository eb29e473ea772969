//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// writer creates services one after another until stopped and records the
// outcome of each: ok (2xx), failed (4xx/5xx) or unknown (no answer).
type writer struct {
	admin string
	mu    sync.Mutex
	ok    []string
	fail  []string
	unk   []string
}

// run writes until ctx ends, pausing between writes (and at least 20 ms
// after a write that got no answer, so a down admin-api is not spun on).
func (w *writer) run(ctx context.Context, prefix string, pause time.Duration) {
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("%s-%05d", prefix, i)
		req, _ := http.NewRequestWithContext(ctx, "POST", w.admin+"/services",
			stringsReader(`{"name":"`+name+`","host":"`+name+`.internal"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		w.mu.Lock()
		switch {
		case err != nil: // no answer, or cancelled by the test: the outcome is unknown
			w.unk = append(w.unk, name)
		case resp.StatusCode/100 == 2:
			w.ok = append(w.ok, name)
		default:
			w.fail = append(w.fail, name)
		}
		w.mu.Unlock()
		wait := pause
		if err == nil {
			resp.Body.Close()
		} else {
			wait = max(pause, 20*time.Millisecond)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// versionWatch polls data planes' /status and records every version seen,
// so a test can assert versions never go backwards.
type versionWatch struct {
	mu       sync.Mutex
	regress  []string
	last     map[string]float64
	observed int
}

func watchVersions(ctx context.Context, dps []*dataplane) *versionWatch {
	vw := &versionWatch{last: map[string]float64{}}
	go func() {
		for ctx.Err() == nil {
			for _, dp := range dps {
				resp, err := http.Get(dp.Status + "/status")
				if err != nil {
					continue
				}
				var st map[string]any
				decodeJSON(resp, &st)
				v := num(st, "version")
				vw.mu.Lock()
				if v < vw.last[dp.NodeID] {
					vw.regress = append(vw.regress, fmt.Sprintf("%s: version %v after %v", dp.NodeID, v, vw.last[dp.NodeID]))
				}
				vw.last[dp.NodeID] = v
				vw.observed++
				vw.mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return vw
}

// converged waits until every data plane has the sync-gateway's version and
// hash and holds exactly the entities Postgres holds (by count), then checks
// that every acknowledged write is among them.
func (s *system) converged(t *testing.T, dps []*dataplane, w *writer) {
	t.Helper()
	eventually(t, 90*time.Second, func() error {
		// A process restarted by the test may not listen yet: that is a
		// reason to poll again, not a failure.
		sg, err := getJSON(s.Sync + "/status")
		if err != nil {
			return err
		}
		rows := s.countRows("services") + s.countRows("routes")
		for _, dp := range dps {
			st, err := getJSON(dp.Status + "/status")
			if err != nil {
				return err
			}
			if num(st, "version") != num(sg, "version") || st["hash"] != sg["hash"] {
				return fmt.Errorf("%s at version %v hash %v, sync-gateway at %v %v", dp.NodeID, st["version"], st["hash"], sg["version"], sg["hash"])
			}
			if int(num(st, "entities")) != rows {
				return fmt.Errorf("%s holds %v entities, Postgres %d", dp.NodeID, st["entities"], rows)
			}
		}
		return nil
	})
	// No lost write: every acknowledged service exists in Postgres (the data
	// planes hold exactly as many entities with the same hash).
	w.mu.Lock()
	defer w.mu.Unlock()
	db, err := s.DB()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, name := range w.ok {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM services WHERE name = $1", name).Scan(&n); err != nil || n != 1 {
			t.Fatalf("acknowledged service %s: %d rows (%v)", name, n, err)
		}
	}
	for _, name := range w.fail {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM services WHERE name = $1", name).Scan(&n); err != nil || n != 0 {
			t.Fatalf("failed write %s left %d rows (%v)", name, n, err)
		}
	}
	if len(w.ok) == 0 {
		t.Fatal("no write succeeded")
	}
	t.Logf("%d ok, %d failed, %d unknown writes", len(w.ok), len(w.fail), len(w.unk))
}

// Scenario: the sync-gateway is killed with SIGKILL mid-stream, twice, while
// writes continue; no acknowledged write is lost, no data plane sees its
// version go backwards, and all converge on Postgres.
func TestSyncGatewayKilledDuringWrites(t *testing.T) {
	s := newSystem(t)
	dps := []*dataplane{s.startDataplane("dp1"), s.startDataplane("dp2")}
	ctx, stop := context.WithCancel(t.Context())
	vw := watchVersions(ctx, dps)
	w := &writer{admin: s.Admin}
	done := make(chan struct{})
	go func() { w.run(ctx, "k", 0); close(done) }()

	for round := range 2 {
		waitOK(t, w, 20*(round+1))
		s.SyncProc.Stop(syscall.SIGKILL)
		waitOK(t, w, 20*(round+1)+10) // writes go on while it is down
		s.restart(s.SyncProc)
	}
	waitOK(t, w, 60)
	stop()
	<-done
	s.converged(t, dps, w)
	vw.mu.Lock()
	defer vw.mu.Unlock()
	if len(vw.regress) > 0 || vw.observed == 0 {
		t.Fatalf("versions went backwards (%d observations): %v", vw.observed, vw.regress)
	}
}

// Scenario: admin-api is killed with SIGKILL while writes go on: whatever it
// committed is published by the outbox relay after the restart.
func TestAdminKilledDuringWrites(t *testing.T) {
	s := newSystem(t)
	dps := []*dataplane{s.startDataplane("dp1")}
	ctx, stop := context.WithCancel(t.Context())
	w := &writer{admin: s.Admin}
	done := make(chan struct{})
	go func() { w.run(ctx, "a", 0); close(done) }()
	waitOK(t, w, 20)
	s.AdminProc.Stop(syscall.SIGKILL)
	s.restart(s.AdminProc)
	s.waitHealthy(s.Admin + "/health")
	waitOK(t, w, 40)
	stop()
	<-done
	s.converged(t, dps, w)
}

// Scenario: a data plane killed with SIGKILL comes back with its store: the
// same version, and records redelivered after it are no-ops.
func TestDataplaneKilledKeepsItsStore(t *testing.T) {
	s := newSystem(t)
	dp := s.startDataplane("dp1")
	up := upstream(t)
	mustDo(t, 201, "POST", s.Admin+"/services", map[string]any{"name": "echo", "url": up.URL})
	for i := range 5 {
		mustDo(t, 201, "POST", s.Admin+"/services/echo/routes", map[string]any{"name": "r" + strconv.Itoa(i), "paths": []string{"/p" + strconv.Itoa(i)}})
	}
	eventually(t, propagation, routesTo(dp, "/p4/x", "/x"))
	before := statusDoc(t, dp)
	dp.Stop(syscall.SIGKILL)
	s.restart(dp.Process)
	s.waitHealthy(dp.Status + "/status/ready")
	after := statusDoc(t, dp)
	if num(after, "version") != num(before, "version") || after["hash"] != before["hash"] || num(after, "batches_applied") != 0 {
		t.Fatalf("after SIGKILL and restart %v, before %v", after, before)
	}
	eventually(t, propagation, routesTo(dp, "/p0/y", "/y"))
	mustDo(t, 201, "POST", s.Admin+"/services/echo/routes", map[string]any{"name": "r9", "paths": []string{"/p9"}})
	eventually(t, propagation, routesTo(dp, "/p9/z", "/z"))
	if st := statusDoc(t, dp); num(st, "version") != num(before, "version")+1 {
		t.Fatalf("one change after restart: version %v, want %v", st["version"], num(before, "version")+1)
	}
}

// Scenario: Kafka and the control plane go away; the data plane keeps
// proxying on its last good configuration, stays ready, says it is stale,
// and serves from its store across its own restart. The test runs its own
// broker so that stopping it disturbs no other test.
func TestDataplaneServesWithoutKafkaAndControlPlane(t *testing.T) {
	kafkaPort, ctrlPort := freePort(t), freePort(t)
	home := t.TempDir()
	script, _ := filepath.Abs("../deployments/local/kafka.sh")
	broker := func(cmd string) {
		c := exec.Command(script, cmd)
		c.Env = append(os.Environ(), "KAFKA_PORT="+strconv.Itoa(kafkaPort), "KAFKA_CONTROLLER_PORT="+strconv.Itoa(ctrlPort), "KAFKA_HOME="+home, "KAFKA_HEAP=256m")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("kafka.sh %s: %v\n%s", cmd, err, out)
		}
	}
	broker("start")
	t.Cleanup(func() { broker("stop") })
	t.Setenv("DELTAPLANE_TEST_KAFKA", "127.0.0.1:"+strconv.Itoa(kafkaPort))

	s := newSystem(t, "DP_HEARTBEAT_INTERVAL=500ms")
	dp := s.startDataplane("dp1")
	up := upstream(t)
	mustDo(t, 201, "POST", s.Admin+"/services", map[string]any{"name": "echo", "url": up.URL})
	mustDo(t, 201, "POST", s.Admin+"/services/echo/routes", map[string]any{"name": "r1", "paths": []string{"/kept"}})
	eventually(t, propagation, routesTo(dp, "/kept/1", "/1"))

	s.AdminProc.Stop(syscall.SIGTERM)
	s.SyncProc.Stop(syscall.SIGTERM)
	broker("stop")

	eventually(t, 30*time.Second, func() error {
		if st := statusDoc(t, dp); st["stale"] != true {
			return fmt.Errorf("stale = %v with Kafka down", st["stale"])
		}
		return nil
	})
	if err := routesTo(dp, "/kept/2", "/2")(); err != nil {
		t.Fatalf("with Kafka down: %v", err)
	}
	s.waitHealthy(dp.Status + "/status/ready")

	dp.Stop(syscall.SIGTERM)
	s.restart(dp.Process)
	s.waitHealthy(dp.Status + "/status/ready")
	if err := routesTo(dp, "/kept/3", "/3")(); err != nil {
		t.Fatalf("restarted with Kafka down: %v", err)
	}
}

func waitOK(t *testing.T, w *writer, n int) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.ok) < n {
			return fmt.Errorf("%d acknowledged writes, waiting for %d", len(w.ok), n)
		}
		return nil
	})
}
