//go:build e2e

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
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

	"github.com/deltaplane/deltaplane/e2e/checker"
	"github.com/deltaplane/deltaplane/shared/testsupport"
)

// checked is what a fault test gives the checker: the history of its Admin
// API requests (every write goes through it) and a version sampler per
// data plane.
type checked struct {
	s   *system
	h   *checker.History
	ctx context.Context // ends at the test's cleanup: stops the samplers

	mu       sync.Mutex
	samplers map[string]*sampling // by node id
	retired  []string             // regressions of samplers stopped by lostDisk
	quar     map[string]int64     // quarantine counts read early (see readQuarantine)
}

type sampling struct {
	sm   *checker.Sampler
	stop context.CancelFunc
}

// checked starts a record for the checker and samples the given data
// planes' versions.
func (s *system) checked(dps ...*dataplane) *checked {
	ctx, cancel := context.WithCancel(context.Background())
	s.t.Cleanup(cancel)
	c := &checked{s: s, h: &checker.History{}, ctx: ctx, samplers: map[string]*sampling{}}
	c.sample(dps...)
	return c
}

// echoRouted starts data plane dp1 with a record on it, creates service
// echo in front of a fresh upstream and its route r1 on path, and waits
// until dp1 routes path+probe to the upstream's probe.
func (s *system) echoRouted(t *testing.T, path, probe string) (dp *dataplane, c *checked, echo string) {
	t.Helper()
	dp = s.startDataplane("dp1")
	c = s.checked(dp)
	up := upstream(t)
	echo = c.must(t, 201, "POST", "/services", map[string]any{"name": "echo", "url": up.URL})["id"].(string)
	c.must(t, 201, "POST", "/services/"+echo+"/routes", map[string]any{"name": "r1", "paths": []string{path}})
	testsupport.Eventually(t, propagation, routesTo(dp, path+probe, probe))
	return dp, c, echo
}

// sample polls the versions of data planes (started later than the record).
func (c *checked) sample(dps ...*dataplane) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, dp := range dps {
		ctx, stop := context.WithCancel(c.ctx)
		c.samplers[dp.NodeID] = &sampling{sm: checker.Sample(ctx, 20*time.Millisecond, dp.Status), stop: stop}
	}
}

// lostDisk restarts the sampling of a data plane whose store the test
// removed: it starts again from nothing, so its next version may be lower.
func (c *checked) lostDisk(dp *dataplane) {
	c.mu.Lock()
	if old := c.samplers[dp.NodeID]; old != nil {
		old.stop()
		old.sm.Wait()
		c.retired = append(c.retired, old.sm.Regressions()...)
	}
	c.mu.Unlock()
	c.sample(dp)
}

// regressions stops the samplers and returns every version decrease they
// saw, failing the test when a data plane was never sampled.
func (c *checked) regressions(t *testing.T) []string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := append([]string(nil), c.retired...)
	for node, sp := range c.samplers {
		sp.stop()
		sp.sm.Wait()
		if sp.sm.Observed() == 0 {
			t.Errorf("%s: no version sample taken", node)
		}
		out = append(out, sp.sm.Regressions()...)
	}
	return out
}

// client is a recording Admin API client with a number for the report.
func (c *checked) client(id int) *checker.Client {
	return &checker.Client{Base: c.s.Admin, History: c.h, ID: id, HTTP: &http.Client{Timeout: 5 * time.Second}}
}

// must performs a write recorded in the history and fails the test unless
// it answers want; it returns the decoded response. A POST without an id
// gets one: the history keys every write by the id it names.
func (c *checked) must(t *testing.T, want int, method, path string, body map[string]any) map[string]any {
	t.Helper()
	if method == "POST" && path != "/config" && body["id"] == nil {
		body["id"] = newEntityID()
	}
	op := c.client(0).Do(t.Context(), method, path, body)
	if op.Status != want {
		t.Fatalf("%s: want %d", op.String(), want)
	}
	var m map[string]any
	if len(op.Response) > 0 {
		if err := json.Unmarshal(op.Response, &m); err != nil {
			t.Fatalf("%s: decode %q: %v", op.String(), op.Response, err)
		}
	}
	return m
}

// readQuarantine reads the quarantine counts now, for a test that stops
// the broker before its verdict (nothing can be quarantined without it).
func (c *checked) readQuarantine(t *testing.T) {
	t.Helper()
	q, err := checker.Quarantined(t.Context(), c.s.kafka, c.s.Prefix)
	if err != nil {
		t.Fatalf("read quarantine topics: %v", err)
	}
	c.quar = q
}

// truth reads Postgres for the checker; close the database when done.
func (c *checked) truth(t *testing.T) (func(context.Context) (map[string][]byte, error), func()) {
	t.Helper()
	db, err := c.s.DB()
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context) (map[string][]byte, error) { return checker.ReadTruth(ctx, db) }, func() { db.Close() }
}

// converge waits until every given data plane's content equals Postgres,
// key by key, and their hashes agree (checker.Converge).
func (c *checked) converge(t *testing.T, within time.Duration, dps ...*dataplane) {
	t.Helper()
	truth, done := c.truth(t)
	defer done()
	if _, err := checker.Converge(t.Context(), within, truth, statusURLs(dps)); err != nil {
		t.Fatal(err)
	}
}

// equalNow fails unless the data planes' content equals Postgres now, on
// the first reading (for a moment when nothing is in flight).
func (c *checked) equalNow(t *testing.T, dps ...*dataplane) {
	t.Helper()
	truth, done := c.truth(t)
	defer done()
	tr, err := truth(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	views, err := checker.ReadViews(t.Context(), statusURLs(dps))
	if err != nil {
		t.Fatal(err)
	}
	if diff := checker.Diff(tr, views); len(diff) > 0 {
		t.Fatalf("%d differences from Postgres, first: [%s] %s %s", len(diff), diff[0].Property, diff[0].Key, diff[0].Detail)
	}
}

func statusURLs(dps []*dataplane) []string {
	out := make([]string, len(dps))
	for i, dp := range dps {
		out[i] = dp.Status
	}
	return out
}

// verdictOpts is what a test expects beyond the checker's properties.
type verdictOpts struct {
	within time.Duration // for convergence; default 90 s
	// injected counts records the test quarantined on purpose, by topic:
	// exactly that many must be there, and no more.
	injected map[string]int64
	// syncGatewayDown: the test stopped the sync-gateway; do not wait for
	// it to agree with the data planes.
	syncGatewayDown bool
}

// verdict waits until every data plane's content equals Postgres
// (checker.Converge) and, unless it is down, the sync-gateway has their
// version and hash; then it judges the history with checker.Check: every
// acknowledged write is in Postgres unless a later write changed it,
// nothing is there that no request wrote, every data plane equals
// Postgres key by key and content by content, no sampled version
// decreased, and nothing was quarantined beyond what the test injected.
// Any violation fails the test with the checker's report.
func (c *checked) verdict(t *testing.T, dps []*dataplane, o verdictOpts) *checker.Report {
	t.Helper()
	if o.within == 0 {
		o.within = 90 * time.Second
	}
	truth, done := c.truth(t)
	defer done()
	urls := statusURLs(dps)
	took, err := checker.Converge(t.Context(), o.within, truth, urls)
	if err != nil {
		t.Fatal(err)
	}
	if !o.syncGatewayDown {
		testsupport.Eventually(t, o.within, c.syncGatewayAgrees(urls))
	}
	in := checker.Input{Ops: c.h.Ops(), Regressions: c.regressions(t)}
	if in.Truth, err = truth(t.Context()); err != nil {
		t.Fatal(err)
	}
	if in.Views, err = checker.ReadViews(t.Context(), urls); err != nil {
		t.Fatal(err)
	}
	in.Quarantined = c.quar
	if in.Quarantined == nil {
		if in.Quarantined, err = checker.Quarantined(t.Context(), c.s.kafka, c.s.Prefix); err != nil {
			t.Fatalf("read quarantine topics: %v", err)
		}
	}
	in.Quarantined = expectInjected(t, in.Quarantined, o.injected)
	r := checker.Check(in)
	t.Logf("converged in %s; %s", took.Round(10*time.Millisecond), r)
	if !r.OK() {
		t.Errorf("the checker found violations:\n%s", r)
	}
	if r.Ops[checker.OK] == 0 {
		t.Error("no write was acknowledged")
	}
	return r
}

// expectInjected checks that each topic holds exactly the records a test
// quarantined on purpose and returns the counts without them, for Check.
func expectInjected(t *testing.T, got, injected map[string]int64) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for topic, n := range got {
		out[topic] = n
	}
	for topic, n := range injected {
		if got[topic] != n {
			t.Errorf("%s holds %d records, the test quarantined %d on purpose", topic, got[topic], n)
		}
		out[topic] -= min(n, got[topic])
	}
	return out
}

// syncGatewayAgrees reports nil once the sync-gateway answers with the
// version and hash every data plane has.
func (c *checked) syncGatewayAgrees(urls []string) func() error {
	return func() error {
		sg, err := getStatus(c.s.Sync + "/status")
		if err != nil {
			return fmt.Errorf("sync-gateway: %w", err)
		}
		views, err := checker.ReadViews(c.ctx, urls)
		if err != nil {
			return err
		}
		for _, v := range views {
			if float64(v.Version) != num(sg, "version") || v.Hash != sg["hash"] {
				return fmt.Errorf("%s at version %d hash %s, sync-gateway at %v %v", v.NodeID, v.Version, v.Hash, sg["version"], sg["hash"])
			}
		}
		return nil
	}
}

// writer is one sequential Admin API client that, round after round,
// creates, updates and deletes services (a delete cascades to the
// service's plugin), routes (moved from one service to another), consumers
// and their key-auth credentials (a consumer's delete cascades to its
// credentials), and records every request with its outcome. It chooses
// every id itself, so the history knows what an unanswered create would
// have written, and tags every write with its own value, so no two writes
// leave the same content.
type writer struct {
	c      *checker.Client
	prefix string
	base   uint32 // makes the ids of one writer unique across writers

	mu sync.Mutex
	ok int
}

func (c *checked) writer(prefix string) *writer {
	return &writer{c: c.client(1), prefix: prefix, base: uint32(time.Now().UnixNano())}
}

type request struct {
	method, path string
	body         map[string]any
}

// id is the uuid of entity kind (0 service, 1 route, 2 plugin, 3 consumer,
// 4 credential) of round r.
func (w *writer) id(kind, r int) string {
	return fmt.Sprintf("%08x-%04x-4000-8000-%012x", w.base, kind, r)
}

// round is the requests of round r. A request whose target's create
// failed fails too (404); the checker judges whatever happened.
func (w *writer) round(r int) []request {
	const svc, rt, plg, con, cred = 0, 1, 2, 3, 4
	name := fmt.Sprintf("%s-%05d", w.prefix, r)
	tags := func(step string) []string { return []string{name + "-" + step} }
	reqs := []request{
		{"POST", "/services", map[string]any{"id": w.id(svc, r), "name": name, "host": name + ".internal", "tags": tags("c")}},
		{"POST", "/services/" + w.id(svc, r) + "/routes", map[string]any{"id": w.id(rt, r), "name": name, "paths": []string{"/" + name}, "tags": tags("c")}},
		{"PATCH", "/services/" + w.id(svc, r), map[string]any{"host": name + ".v2.internal", "tags": tags("u")}},
		{"POST", "/consumers", map[string]any{"id": w.id(con, r), "username": name, "tags": tags("c")}},
		{"POST", "/consumers/" + w.id(con, r) + "/key-auth", map[string]any{"id": w.id(cred, r), "key": name + "-key", "tags": tags("c")}},
	}
	if r%2 == 0 {
		reqs = append(reqs, request{"POST", "/services/" + w.id(svc, r) + "/plugins", map[string]any{"id": w.id(plg, r), "name": "rate-limiting", "config": map[string]any{"minute": 1 + r%60}, "tags": tags("c")}})
	}
	if r >= 1 {
		// The previous round's route moves to this round's service.
		reqs = append(reqs, request{"PATCH", "/routes/" + w.id(rt, r-1), map[string]any{"service": map[string]any{"id": w.id(svc, r)}, "paths": []string{"/" + name + "-moved"}, "tags": tags("m")}})
	}
	if r >= 2 && r%2 == 1 {
		// The previous round's service (which has a plugin) keeps the
		// route moved into it a round ago: delete that route, then the
		// service, which cascades to its plugin.
		reqs = append(reqs,
			request{"DELETE", "/routes/" + w.id(rt, r-2), nil},
			request{"DELETE", "/services/" + w.id(svc, r-1), nil})
	}
	switch {
	case r >= 1 && r%3 == 1: // cascades to its credential
		reqs = append(reqs, request{"DELETE", "/consumers/" + w.id(con, r-1), nil})
	case r >= 1 && r%3 == 2:
		reqs = append(reqs,
			request{"DELETE", "/key-auths/" + w.id(cred, r-1), nil},
			request{"PATCH", "/consumers/" + w.id(con, r-1), map[string]any{"custom_id": name, "tags": tags("u")}})
	}
	return reqs
}

// run writes until ctx ends, pausing between requests (and at least 20 ms
// after one that got no answer, so a down admin-api is not spun on).
func (w *writer) run(ctx context.Context, pause time.Duration) {
	for r := 0; ; r++ {
		for _, q := range w.round(r) {
			if ctx.Err() != nil {
				return
			}
			op := w.c.Do(ctx, q.method, q.path, q.body)
			wait := pause
			if op.Status == 0 { // no answer (refused or lost): admin-api may be down
				wait = max(pause, 20*time.Millisecond)
			}
			if op.Outcome == checker.OK {
				w.mu.Lock()
				w.ok++
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
}

// background runs w until ctx ends or the returned stop, which waits for
// it to end.
func (w *writer) background(ctx context.Context, pause time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.run(ctx, pause); close(done) }()
	return func() { cancel(); <-done }
}

func (w *writer) okCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ok
}

func waitOK(t *testing.T, w *writer, n int) {
	t.Helper()
	testsupport.Eventually(t, 60*time.Second, func() error {
		if ok := w.okCount(); ok < n {
			return fmt.Errorf("%d acknowledged writes, waiting for %d", ok, n)
		}
		return nil
	})
}

// newEntityID is a random version 4 uuid.
func newEntityID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Scenario: the sync-gateway is killed with SIGKILL mid-stream, twice, while
// writes continue; no acknowledged write is lost, no data plane sees its
// version go backwards, and all converge on Postgres.
func TestSyncGatewayKilledDuringWrites(t *testing.T) {
	s := newSystem(t)
	dps := []*dataplane{s.startDataplane("dp1"), s.startDataplane("dp2")}
	c := s.checked(dps...)
	w := c.writer("k")
	stop := w.background(t.Context(), 0)

	for round := range 2 {
		waitOK(t, w, 20*(round+1))
		s.SyncProc.Stop(syscall.SIGKILL)
		waitOK(t, w, 20*(round+1)+10) // writes go on while it is down
		s.restart(s.SyncProc)
	}
	waitOK(t, w, 60)
	stop()
	c.verdict(t, dps, verdictOpts{})
}

// Scenario: admin-api is killed with SIGKILL while writes go on: whatever it
// committed is published by the outbox relay after the restart.
func TestAdminKilledDuringWrites(t *testing.T) {
	s := newSystem(t)
	dps := []*dataplane{s.startDataplane("dp1")}
	c := s.checked(dps...)
	w := c.writer("a")
	stop := w.background(t.Context(), 0)
	waitOK(t, w, 20)
	s.AdminProc.Stop(syscall.SIGKILL)
	s.restart(s.AdminProc)
	s.waitHealthy(s.Admin + "/health")
	waitOK(t, w, 40)
	stop()
	c.verdict(t, dps, verdictOpts{})
}

// Scenario: a data plane killed with SIGKILL comes back with its store: the
// same version, and records redelivered after it are no-ops.
func TestDataplaneKilledKeepsItsStore(t *testing.T) {
	s := newSystem(t)
	dp := s.startDataplane("dp1")
	c := s.checked(dp)
	up := upstream(t)
	echo := c.must(t, 201, "POST", "/services", map[string]any{"name": "echo", "url": up.URL})["id"].(string)
	for i := range 5 {
		c.must(t, 201, "POST", "/services/"+echo+"/routes", map[string]any{"name": "r" + strconv.Itoa(i), "paths": []string{"/p" + strconv.Itoa(i)}})
	}
	testsupport.Eventually(t, propagation, routesTo(dp, "/p4/x", "/x"))
	before := statusDoc(t, dp)
	dp.Stop(syscall.SIGKILL)
	s.restart(dp.Process)
	s.waitHealthy(dp.Status + "/status/ready")
	after := statusDoc(t, dp)
	if num(after, "version") != num(before, "version") || after["hash"] != before["hash"] || num(after, "batches_applied") != 0 {
		t.Fatalf("after SIGKILL and restart %v, before %v", after, before)
	}
	testsupport.Eventually(t, propagation, routesTo(dp, "/p0/y", "/y"))
	c.must(t, 201, "POST", "/services/"+echo+"/routes", map[string]any{"name": "r9", "paths": []string{"/p9"}})
	testsupport.Eventually(t, propagation, routesTo(dp, "/p9/z", "/z"))
	if st := statusDoc(t, dp); num(st, "version") != num(before, "version")+1 {
		t.Fatalf("one change after restart: version %v, want %v", st["version"], num(before, "version")+1)
	}
	c.verdict(t, []*dataplane{dp}, verdictOpts{})
}

// Scenario: Kafka and the control plane go away; the data plane keeps
// proxying on its last good configuration, stays ready, says it is stale,
// and serves from its store across its own restart. The test runs its own
// broker so that stopping it disturbs no other test.
func TestDataplaneServesWithoutKafkaAndControlPlane(t *testing.T) {
	kafkaPort, ctrlPort := testsupport.FreePort(t), testsupport.FreePort(t)
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
	dp, c, _ := s.echoRouted(t, "/kept", "/1")
	c.readQuarantine(t) // the last chance: the broker goes away

	s.AdminProc.Stop(syscall.SIGTERM)
	s.SyncProc.Stop(syscall.SIGTERM)
	broker("stop")

	testsupport.Eventually(t, 30*time.Second, func() error {
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
	// Its content, served from its store, is still what Postgres holds.
	c.verdict(t, []*dataplane{dp}, verdictOpts{within: 10 * time.Second, syncGatewayDown: true})
}
