// Package cluster starts a whole deltaplane system as processes on loopback
// (admin-api, sync-gateway, any number of data planes) against a real Kafka
// broker and Postgres, isolated by its own database, topic prefix and ports.
// The e2e tests and the benchmark both drive the system through it.
package cluster

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/deltaplane/deltaplane/shared/testsupport"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// Services are the binaries Build produces.
var Services = []string{"admin-api", "sync-gateway", "dataplane"}

// Build compiles the services into dir. repoRoot is the checkout's top.
func Build(ctx context.Context, repoRoot, dir string) error {
	for _, svc := range Services {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, svc), ".")
		cmd.Dir = filepath.Join(repoRoot, "services", svc)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s: %v\n%s", svc, err, out)
		}
	}
	return nil
}

// Options describe one system.
type Options struct {
	Name          string   // unique; names the database, topic prefix and groups
	Kafka         string   // broker address
	PostgresAdmin string   // DSN of a database from which to CREATE DATABASE
	BinDir        string   // where Build put the binaries
	WorkDir       string   // logs and data-plane stores
	SyncMode      string   // "incremental" (default) or "full"
	Env           []string // extra environment for every process
	LogLevel      string   // default "info"
}

// Cluster is a running system.
type Cluster struct {
	opts   Options
	Prefix string // topic prefix
	DBName string
	DBURL  string
	Admin  string // admin-api base URL
	Sync   string // sync-gateway status base URL

	AdminProc *Process
	SyncProc  *Process

	mu    sync.Mutex
	procs []*Process
}

// Process is one service process; it can be stopped and started again.
type Process struct {
	Name string
	Log  string
	bin  string
	env  []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Dataplane is a running data plane.
type Dataplane struct {
	*Process
	NodeID string
	Proxy  string // proxy base URL
	// ProxyTLS is the TLS proxy listener's address (host:port).
	ProxyTLS string
	Status   string // status base URL
	Data     string // store directory
}

// FreePort returns a loopback port that was free a moment ago, outside
// the range outgoing connections take theirs from (testsupport.Port).
func FreePort() (int, error) { return testsupport.Port() }

// Start creates the database and starts admin-api and the sync-gateway,
// returning once both answer /health.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.SyncMode == "" {
		o.SyncMode = "incremental"
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	c := &Cluster{opts: o, Prefix: o.Name + ".", DBName: strings.ReplaceAll(o.Name, "-", "_")}
	if err := c.createDatabase(ctx); err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	c.Admin = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	c.Sync = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	c.AdminProc, err = c.Spawn("admin-api", "admin-api",
		fmt.Sprintf("ADMIN_LISTEN=127.0.0.1:%d", ports[0]), "DATABASE_URL="+c.DBURL)
	if err != nil {
		return c, err
	}
	c.SyncProc, err = c.Spawn("sync-gateway", "sync-gateway",
		fmt.Sprintf("SYNC_LISTEN=127.0.0.1:%d", ports[1]), "SYNC_GROUP="+o.Name+"-sync")
	if err != nil {
		return c, err
	}
	for _, u := range []string{c.Admin + "/health", c.Sync + "/health"} {
		if err := WaitHTTP(ctx, u, 60*time.Second); err != nil {
			return c, err
		}
	}
	return c, nil
}

// Env is the environment every process of the cluster gets.
func (c *Cluster) Env() []string {
	return append([]string{
		"KAFKA_BROKERS=" + c.opts.Kafka, "TOPIC_PREFIX=" + c.Prefix,
		"LOG_LEVEL=" + c.opts.LogLevel, "SYNC_MODE=" + c.opts.SyncMode,
	}, c.opts.Env...)
}

// Spawn starts a binary of BinDir as a named process of the cluster.
func (c *Cluster) Spawn(name, binary string, env ...string) (*Process, error) {
	p := &Process{
		Name: name,
		Log:  filepath.Join(c.opts.WorkDir, name+".log"),
		bin:  filepath.Join(c.opts.BinDir, binary),
		env:  append(c.Env(), env...),
	}
	if err := p.Start(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return p, nil
}

// StartDataplane starts a data plane with a node id unique to the cluster
// and waits for its /health.
func (c *Cluster) StartDataplane(ctx context.Context, node string, env ...string) (*Dataplane, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	dp := &Dataplane{
		NodeID:   c.Prefix + node,
		Proxy:    fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		ProxyTLS: fmt.Sprintf("127.0.0.1:%d", ports[2]),
		Status:   fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		Data:     filepath.Join(c.opts.WorkDir, node),
	}
	dp.Process, err = c.Spawn("dataplane-"+node, "dataplane", append([]string{
		"DP_NODE_ID=" + dp.NodeID,
		"DP_DATA_DIR=" + dp.Data,
		fmt.Sprintf("DP_PROXY_LISTEN=127.0.0.1:%d", ports[0]),
		fmt.Sprintf("DP_STATUS_LISTEN=127.0.0.1:%d", ports[1]),
		"DP_PROXY_TLS_LISTEN=" + dp.ProxyTLS,
	}, env...)...)
	if err != nil {
		return nil, err
	}
	return dp, WaitHTTP(ctx, dp.Status+"/health", 60*time.Second)
}

// Close stops every process with SIGTERM and drops the database.
func (c *Cluster) Close() {
	c.mu.Lock()
	procs := c.procs
	c.mu.Unlock()
	for _, p := range procs {
		p.Stop(syscall.SIGTERM)
	}
	if db, err := sql.Open("pgx", c.opts.PostgresAdmin); err == nil {
		db.Exec(`DROP DATABASE IF EXISTS "` + c.DBName + `" WITH (FORCE)`)
		db.Close()
	}
}

// Processes lists the processes started so far.
func (c *Cluster) Processes() []*Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Process(nil), c.procs...)
}

func (c *Cluster) createDatabase(ctx context.Context) error {
	db, err := sql.Open("pgx", c.opts.PostgresAdmin)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE DATABASE "`+c.DBName+`"`); err != nil {
		return fmt.Errorf("create database %s: %w", c.DBName, err)
	}
	u, err := withDatabase(c.opts.PostgresAdmin, c.DBName)
	c.DBURL = u
	return err
}

// DB opens the cluster's database.
func (c *Cluster) DB() (*sql.DB, error) { return sql.Open("pgx", c.DBURL) }

func withDatabase(dsn, name string) (string, error) {
	i := strings.Index(dsn, "://")
	if i < 0 {
		return "", fmt.Errorf("postgres DSN %q: want a URL", dsn)
	}
	rest := dsn[i+3:]
	slash := strings.Index(rest, "/")
	q := strings.Index(rest, "?")
	switch {
	case slash < 0 && q < 0:
		return dsn + "/" + name, nil
	case slash < 0 || (q >= 0 && q < slash):
		return dsn[:i+3] + rest[:q] + "/" + name + rest[q:], nil
	case q < 0:
		return dsn[:i+3] + rest[:slash] + "/" + name, nil
	default:
		return dsn[:i+3] + rest[:slash] + "/" + name + rest[q:], nil
	}
}

func freePorts(n int) ([]int, error) {
	out := make([]int, n)
	for i := range out {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// Start launches the process (again, after Stop), appending to its log.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is running", p.Name)
		}
	}
	f, err := os.OpenFile(p.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

// Pid is the running process's id.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Signal sends sig without waiting (SIGSTOP, SIGCONT).
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return errors.New("not started")
	}
	return p.cmd.Process.Signal(sig)
}

// Stop sends sig and waits for the process to exit (SIGKILL after 20 s).
func (p *Process) Stop(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// LogTail is the end of the process's log.
func (p *Process) LogTail(n int) string {
	b, _ := os.ReadFile(p.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// WaitHTTP polls url until it answers 200 or within passes.
func WaitHTTP(ctx context.Context, url string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy within %s: %v", url, within, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
