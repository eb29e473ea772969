//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/segmentio/kafka-go"
)

// binDir holds the service binaries built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	for _, v := range []string{"DELTAPLANE_TEST_KAFKA", "DELTAPLANE_TEST_POSTGRES"} {
		if os.Getenv(v) == "" {
			fmt.Fprintf(os.Stderr, "e2e: %s is not set; run the tests with make test\n", v)
			os.Exit(1)
		}
	}
	dir, err := os.MkdirTemp("", "deltaplane-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, svc := range []string{"admin-api", "sync-gateway", "dataplane"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, svc), ".")
		cmd.Dir = filepath.Join("..", "services", svc)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build %s: %v\n", svc, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// system is one isolated deltaplane: its own database, topic prefix, ports.
type system struct {
	t        *testing.T
	prefix   string
	dbURL    string
	admin    string // base URL of admin-api
	sync     string // base URL of the sync-gateway's status server
	procs    []*proc
	kafka    string
	workDir  string
	adminEnv []string
}

type proc struct {
	name string
	args []string
	env  []string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// dataplane is one running data-plane process.
type dataplane struct {
	*proc
	proxy  string // base URL of its proxy
	status string // base URL of its status server
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func uniqueName(t *testing.T) string {
	n := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	return fmt.Sprintf("e2e-%s-%d", n, time.Now().UnixNano()%1e9)
}

// newSystem creates a database and starts admin-api and the sync-gateway.
func newSystem(t *testing.T) *system {
	t.Helper()
	name := uniqueName(t)
	s := &system{t: t, prefix: name + ".", kafka: os.Getenv("DELTAPLANE_TEST_KAFKA"), workDir: t.TempDir()}
	s.dbURL = createDatabase(t, strings.ReplaceAll(name, "-", "_"))

	adminPort, syncPort := freePort(t), freePort(t)
	s.admin = fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	s.sync = fmt.Sprintf("http://127.0.0.1:%d", syncPort)
	common := []string{"KAFKA_BROKERS=" + s.kafka, "TOPIC_PREFIX=" + s.prefix, "LOG_LEVEL=debug"}
	s.adminEnv = append([]string{fmt.Sprintf("ADMIN_LISTEN=127.0.0.1:%d", adminPort), "DATABASE_URL=" + s.dbURL}, common...)
	s.start("admin-api", s.adminEnv)
	s.start("sync-gateway", append([]string{fmt.Sprintf("SYNC_LISTEN=127.0.0.1:%d", syncPort), "SYNC_GROUP=" + name + "-sync"}, common...))
	s.waitHealthy(s.admin + "/health")
	s.waitHealthy(s.sync + "/health")
	return s
}

func createDatabase(t *testing.T, name string) string {
	t.Helper()
	admin := os.Getenv("DELTAPLANE_TEST_POSTGRES")
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), `CREATE DATABASE "`+name+`"`); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", admin)
		if err != nil {
			return
		}
		defer db.Close()
		db.Exec(`DROP DATABASE IF EXISTS "` + name + `" WITH (FORCE)`)
	})
	return strings.Replace(admin, "/postgres?", "/"+name+"?", 1)
}

func (s *system) start(name string, env []string) *proc {
	s.t.Helper()
	p := &proc{name: name, args: []string{filepath.Join(binDir, strings.SplitN(name, "#", 2)[0])}, env: env,
		log: filepath.Join(s.workDir, strings.ReplaceAll(name, "#", "-")+".log")}
	s.launch(p)
	s.procs = append(s.procs, p)
	s.t.Cleanup(func() { p.stop(syscall.SIGTERM) })
	return p
}

func (s *system) launch(p *proc) {
	s.t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	p.cmd = exec.Command(p.args[0], p.args[1:]...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v", p.name, err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); f.Close(); close(p.done) }()
	s.t.Cleanup(func() {
		if s.t.Failed() {
			b, _ := os.ReadFile(p.log)
			if len(b) > 6000 {
				b = b[len(b)-6000:]
			}
			s.t.Logf("---- last log lines of %s ----\n%s", p.name, b)
		}
	})
}

// stop signals the process and waits for it to exit.
func (p *proc) stop(sig syscall.Signal) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// restart starts a stopped process again with the same arguments.
func (s *system) restart(p *proc) {
	s.t.Helper()
	s.launch(p)
}

func (s *system) startDataplane(nodeID string) *dataplane {
	s.t.Helper()
	proxyPort, statusPort := freePort(s.t), freePort(s.t)
	dp := &dataplane{
		proxy:  fmt.Sprintf("http://127.0.0.1:%d", proxyPort),
		status: fmt.Sprintf("http://127.0.0.1:%d", statusPort),
	}
	dp.proc = s.start("dataplane#"+nodeID, []string{
		"KAFKA_BROKERS=" + s.kafka, "TOPIC_PREFIX=" + s.prefix, "LOG_LEVEL=debug",
		"DP_NODE_ID=" + s.prefix + nodeID,
		"DP_DATA_DIR=" + filepath.Join(s.workDir, nodeID),
		fmt.Sprintf("DP_PROXY_LISTEN=127.0.0.1:%d", proxyPort),
		fmt.Sprintf("DP_STATUS_LISTEN=127.0.0.1:%d", statusPort),
	})
	s.waitHealthy(dp.status + "/health")
	return dp
}

func (s *system) waitHealthy(url string) {
	s.t.Helper()
	eventually(s.t, 60*time.Second, func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s: %d", url, resp.StatusCode)
		}
		return nil
	})
}

// eventually polls f until it returns nil or the deadline passes.
func eventually(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true within %s: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type response struct {
	status int
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
	return m
}

func do(t *testing.T, method, url string, body any) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, b}
}

// mustDo is do with an expected status.
func mustDo(t *testing.T, want int, method, url string, body any) map[string]any {
	t.Helper()
	r := do(t, method, url, body)
	if r.status != want {
		t.Fatalf("%s %s = %d %s, want %d", method, url, r.status, r.body, want)
	}
	if len(r.body) == 0 {
		return nil
	}
	return r.json(t)
}

// status reads a data plane's /status.
func (dp *dataplane) statusDoc(t *testing.T) map[string]any {
	t.Helper()
	return mustDo(t, 200, "GET", dp.status+"/status", nil)
}

func num(m map[string]any, k string) float64 {
	v, _ := m[k].(float64)
	return v
}

// highWaterMark is the end offset of partition 0 of a topic.
func highWaterMark(t *testing.T, broker, topic string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := kafka.DialLeader(ctx, "tcp", broker, topic, 0)
	if err != nil {
		t.Fatalf("dial %s: %v", topic, err)
	}
	defer conn.Close()
	off, err := conn.ReadLastOffset()
	if err != nil {
		t.Fatalf("last offset %s: %v", topic, err)
	}
	return off
}

// countRows counts rows in a table of the system's database.
func (s *system) countRows(table string) int {
	s.t.Helper()
	db, err := sql.Open("pgx", s.dbURL)
	if err != nil {
		s.t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(s.t.Context(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		s.t.Fatalf("count %s: %v", table, err)
	}
	return n
}
