//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/e2e/checker"
	"github.com/deltaplane/deltaplane/e2e/cluster"
	"github.com/deltaplane/deltaplane/e2e/faultproxy"
	"github.com/deltaplane/deltaplane/shared/testsupport"
)

// chaosKafka is a private broker that advertises a fault proxy's port, so
// that every client (services and test) reaches it through the proxy.
func startChaosKafka(t *testing.T) (*privateKafka, *faultproxy.Proxy) {
	t.Helper()
	port := testsupport.FreePort(t)
	proxy, err := faultproxy.Start(0, "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	k := newPrivateKafka(t, port, proxy.Addr(), "KAFKA_ADVERTISED_PORT="+strconv.Itoa(proxy.Port()))
	k.script("start")
	t.Cleanup(func() {
		proxy.Close()
		if pid, err := k.pid(); err == nil {
			syscall.Kill(pid, syscall.SIGCONT)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return k, proxy
}

// scriptErr runs kafka.sh without failing the test (for fault goroutines).
func (k *privateKafka) scriptErr(cmd string) error {
	return runScript(k.sh, k.env, cmd)
}

// killHard kills the broker with SIGKILL and waits until it is gone.
func (k *privateKafka) killHard() error {
	pid, err := k.pid()
	if err != nil {
		return err
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(30 * time.Second); alive(pid); {
		if time.Now().After(deadline) {
			return fmt.Errorf("broker %d alive after SIGKILL", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// privatePostgres is a Postgres cluster of the test's own
// (deployments/local/postgres.sh with its own PGPORT and PG_HOME).
type privatePostgres struct {
	port int
	home string
	env  []string
	sh   string
}

func startPrivatePostgres(t *testing.T) *privatePostgres {
	t.Helper()
	port := testsupport.FreePort(t)
	home, err := os.MkdirTemp("", "deltaplane-chaos-pg-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(home, 0o755) // the postgres user runs the server
	sh, err := filepath.Abs("../deployments/local/postgres.sh")
	if err != nil {
		t.Fatal(err)
	}
	pg := &privatePostgres{port: port, home: home, sh: sh,
		env: append(os.Environ(), "PGPORT="+strconv.Itoa(port), "PG_HOME="+home)}
	if err := pg.script("start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pg.script("stop-immediate")
		os.RemoveAll(home)
	})
	return pg
}

func (pg *privatePostgres) script(cmd string) error {
	return runScript(pg.sh, pg.env, cmd)
}

// dsn is a URL of database db on port.
func pgDSN(port int, db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", port, db)
}

// ---- faults ----

// faultEvent is one injected fault.
type faultEvent struct {
	kind, target string
	start, heal  time.Time
	err          string
}

// chaos injects faults and remembers how to heal each.
type chaos struct {
	t      *testing.T
	k      *privateKafka
	kp     *faultproxy.Proxy
	pg     *privatePostgres
	pgp    *faultproxy.Proxy
	procs  []*cluster.Process
	locks  map[string]*sync.Mutex // one fault at a time per target
	mu     sync.Mutex
	events []faultEvent
	wg     sync.WaitGroup
}

var faultKinds = []string{"kill9", "pause", "broker-kill9", "pg-immediate-stop", "proxy-cut", "proxy-latency", "proxy-half-open"}

func (c *chaos) lock(target string) *sync.Mutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.locks == nil {
		c.locks = map[string]*sync.Mutex{}
	}
	if c.locks[target] == nil {
		c.locks[target] = &sync.Mutex{}
	}
	return c.locks[target]
}

// inject starts one fault of kind (random target) lasting about hold, in
// the background. It returns false when its target is busy with another.
func (c *chaos) inject(rng *rand.Rand, kind string, hold time.Duration) bool {
	var target string
	var proc *cluster.Process
	var proxy *faultproxy.Proxy
	switch kind {
	case "kill9", "pause":
		proc = c.procs[rng.IntN(len(c.procs))]
		target = proc.Name
	case "broker-kill9":
		target = "broker"
	case "pg-immediate-stop":
		target = "postgres"
	default:
		proxy, target = c.kp, "kafka-proxy"
		if rng.IntN(2) == 0 {
			proxy, target = c.pgp, "postgres-proxy"
		}
	}
	l := c.lock(target)
	if !l.TryLock() {
		return false
	}
	latency := time.Duration(20+rng.IntN(280)) * time.Millisecond
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer l.Unlock()
		ev := faultEvent{kind: kind, target: target, start: time.Now()}
		var err error
		switch kind {
		case "kill9":
			proc.Stop(syscall.SIGKILL) // the supervisor restarts it
			time.Sleep(hold)
		case "pause":
			proc.Signal(syscall.SIGSTOP)
			time.Sleep(hold)
			proc.Signal(syscall.SIGCONT)
		case "broker-kill9":
			if err = c.k.killHard(); err == nil {
				time.Sleep(hold)
				err = c.k.scriptErr("start")
			}
		case "pg-immediate-stop":
			if err = c.pg.script("stop-immediate"); err == nil {
				time.Sleep(hold)
				err = c.pg.script("start")
			}
		case "proxy-cut":
			proxy.Cut()
		case "proxy-latency":
			ev.target += fmt.Sprintf(" +%s", latency)
			proxy.SetLatency(latency)
			time.Sleep(hold)
			proxy.SetLatency(0)
		case "proxy-half-open":
			proxy.Stall(true)
			time.Sleep(hold)
			proxy.Stall(false)
		}
		ev.heal = time.Now()
		if err != nil {
			ev.err = err.Error()
		}
		c.mu.Lock()
		c.events = append(c.events, ev)
		c.mu.Unlock()
	}()
	return true
}

// healAll waits for every fault to end (each heals itself) and makes sure
// nothing is left paused, stalled or down.
func (c *chaos) healAll() {
	c.wg.Wait()
	c.kp.Heal()
	c.pgp.Heal()
	for _, p := range c.procs {
		p.Signal(syscall.SIGCONT)
	}
	if conn, err := net.DialTimeout("tcp", c.k.Addr, time.Second); err == nil {
		conn.Close()
	}
	if c.pg.script("status") != nil {
		if err := c.pg.script("start"); err != nil {
			c.t.Errorf("restart postgres: %v", err)
		}
	}
	if err := c.k.scriptErr("start"); err != nil { // idempotent: "already listening"
		c.t.Errorf("restart broker: %v", err)
	}
}

func (c *chaos) summary() (string, map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sort.Slice(c.events, func(i, j int) bool { return c.events[i].start.Before(c.events[j].start) })
	counts := map[string]int{}
	var lines []string
	for _, e := range c.events {
		counts[e.kind]++
		l := fmt.Sprintf("%s %s %s (%.1fs)", e.start.UTC().Format("15:04:05.0"), e.kind, e.target, e.heal.Sub(e.start).Seconds())
		if e.err != "" {
			l += " ERROR " + e.err
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n"), counts
}

// ---- workload ----

// pool is the ids the workload has written, by type (shared by clients).
type pool struct {
	mu      sync.Mutex
	ids     map[string][]string
	imports int // declarative imports still allowed (they replace everything)
}

func (p *pool) takeImport() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.imports <= 0 {
		return false
	}
	p.imports--
	return true
}

func (p *pool) add(typ, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ids == nil {
		p.ids = map[string][]string{}
	}
	p.ids[typ] = append(p.ids[typ], id)
}

func (p *pool) pick(rng *rand.Rand, typ string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := p.ids[typ]
	if len(ids) == 0 {
		return newID(rng) // absent: the write fails (or deletes nothing)
	}
	return ids[rng.IntN(len(ids))]
}

// newID is a uuid drawn from rng, so a seed replays the same ids.
func newID(rng *rand.Rand) string {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	b[6] = (b[6] & 0x0f) | 0x40 // version 4
	b[8] = (b[8] & 0x3f) | 0x80 // variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// workClient is one concurrent client of the workload.
type workClient struct {
	c    *checker.Client
	rng  *rand.Rand
	pool *pool
	n    int
}

func (w *workClient) name(kind string) string {
	w.n++
	return fmt.Sprintf("%s-c%d-%d", kind, w.c.ID, w.n)
}

// step performs one random request.
func (w *workClient) step(ctx context.Context) {
	rng, p := w.rng, w.pool
	do := func(method, path string, body map[string]any) checker.Op {
		return w.c.Do(ctx, method, path, body)
	}
	switch r := rng.IntN(1000); {
	case r < 130:
		id, n := newID(rng), w.name("svc")
		p.add("services", id)
		do("POST", "/services", map[string]any{"id": id, "name": n, "host": n + ".internal", "port": 80 + rng.IntN(100)})
	case r < 220:
		do("PATCH", "/services/"+p.pick(rng, "services"), map[string]any{"host": w.name("h") + ".internal", "tags": []string{"t" + strconv.Itoa(rng.IntN(5))}})
	case r < 360:
		id, n := newID(rng), w.name("rt")
		p.add("routes", id)
		do("POST", "/services/"+p.pick(rng, "services")+"/routes", map[string]any{"id": id, "name": n, "paths": []string{"/" + n}})
	case r < 450: // move a route to another service
		do("PATCH", "/routes/"+p.pick(rng, "routes"), map[string]any{"service": map[string]any{"id": p.pick(rng, "services")}})
	case r < 510:
		do("PATCH", "/routes/"+p.pick(rng, "routes"), map[string]any{"paths": []string{"/" + w.name("p"), "/" + w.name("p")}})
	case r < 580:
		do("DELETE", "/routes/"+p.pick(rng, "routes"), nil)
	case r < 620: // fails while routes point at it; cascades its plugins
		do("DELETE", "/services/"+p.pick(rng, "services"), nil)
	case r < 660:
		id := newID(rng)
		p.add("plugins", id)
		do("POST", "/services/"+p.pick(rng, "services")+"/plugins", map[string]any{"id": id, "name": "rate-limiting", "config": map[string]any{"minute": 1 + rng.IntN(100)}})
	case r < 740:
		id := newID(rng)
		p.add("consumers", id)
		do("POST", "/consumers", map[string]any{"id": id, "username": w.name("user")})
	case r < 820:
		id := newID(rng)
		p.add("keyauth_credentials", id)
		do("POST", "/consumers/"+p.pick(rng, "consumers")+"/key-auth", map[string]any{"id": id, "key": w.name("key")})
	case r < 850:
		id := newID(rng)
		p.add("plugins", id)
		do("POST", "/consumers/"+p.pick(rng, "consumers")+"/plugins", map[string]any{"id": id, "name": "rate-limiting", "config": map[string]any{"minute": 1 + rng.IntN(100)}})
	case r < 890: // cascades to its plugins and credentials
		do("DELETE", "/consumers/"+p.pick(rng, "consumers"), nil)
	case r < 920:
		id := newID(rng)
		p.add("upstreams", id)
		do("POST", "/upstreams", map[string]any{"id": id, "name": w.name("up")})
	case r < 960:
		id := newID(rng)
		p.add("targets", id)
		do("POST", "/upstreams/"+p.pick(rng, "upstreams")+"/targets", map[string]any{"id": id, "target": fmt.Sprintf("10.0.%d.%d:80", rng.IntN(250), rng.IntN(250))})
	case r < 985: // cascades to its targets
		do("DELETE", "/upstreams/"+p.pick(rng, "upstreams"), nil)
	case r < 995 || !p.takeImport():
		do("DELETE", "/key-auths/"+p.pick(rng, "keyauth_credentials"), nil)
	default: // a declarative import replaces everything: rare
		do("POST", "/config", w.importDoc())
	}
}

// importDoc is a small whole configuration with ids of its own.
func (w *workClient) importDoc() map[string]any {
	rng := w.rng
	var svcs, routes, consumers, creds []any
	for range 1 + rng.IntN(3) {
		sid, n := newID(rng), w.name("isvc")
		w.pool.add("services", sid)
		svcs = append(svcs, map[string]any{"id": sid, "name": n, "host": n + ".internal"})
		for range rng.IntN(3) {
			rid, rn := newID(rng), w.name("irt")
			w.pool.add("routes", rid)
			routes = append(routes, map[string]any{"id": rid, "name": rn, "paths": []any{"/" + rn}, "service": map[string]any{"id": sid}})
		}
	}
	cid := newID(rng)
	w.pool.add("consumers", cid)
	consumers = append(consumers, map[string]any{"id": cid, "username": w.name("iuser")})
	kid := newID(rng)
	w.pool.add("keyauth_credentials", kid)
	creds = append(creds, map[string]any{"id": kid, "key": w.name("ikey"), "consumer": map[string]any{"id": cid}})
	doc := map[string]any{"_format_version": "3.0", "services": svcs, "consumers": consumers, "keyauth_credentials": creds}
	if len(routes) > 0 {
		doc["routes"] = routes
	}
	return doc
}
