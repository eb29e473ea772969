//go:build e2e

// Package secure tests deltaplane on a secured Kafka broker (mutual TLS,
// Kafka's StandardAuthorizer, the ACLs of shared/broker.Grants) and a
// Postgres serving TLS: the refusals Kafka must make, the services'
// report of a refusal, heartbeats a data plane cannot forge for another,
// and the services over TLS end to end. TestMain starts a private secured
// broker and Postgres with the project's scripts (deployments/local:
// certs.sh, kafka-secure.sh, postgres.sh) and stops them afterwards.
package secure

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/e2e/cluster"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/config"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

var env struct {
	root     string // the repository
	bin      string // service binaries and kafka-setup
	certs    string // certs.sh's directory
	kafka    string // the secured broker, 127.0.0.1:port
	pgAdmin  string // DSN of the TLS Postgres (verify-full)
	pgPlain  string // the same server without TLS, to create databases
	kafkaEnv []string
	pgEnv    []string
}

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "secure:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	root, err := filepath.Abs("../..")
	if err != nil {
		return 0, err
	}
	env.root = root
	work, err := os.MkdirTemp("", "deltaplane-secure")
	if err != nil {
		return 0, err
	}
	// The postgres user must reach PG_HOME when the tests run as root.
	if err := os.Chmod(work, 0o755); err != nil {
		return 0, err
	}
	defer os.RemoveAll(work)
	env.bin, env.certs = filepath.Join(work, "bin"), filepath.Join(work, "certs")
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = cluster.FreePort(); err != nil {
			return 0, err
		}
	}
	env.kafka = fmt.Sprintf("127.0.0.1:%d", ports[0])
	env.kafkaEnv = []string{
		"CERTS_DIR=" + env.certs,
		fmt.Sprintf("KAFKA_SECURE_PORT=%d", ports[0]),
		fmt.Sprintf("KAFKA_SECURE_CONTROLLER_PORT=%d", ports[1]),
		"KAFKA_SECURE_HOME=" + filepath.Join(work, "kafka"),
		"DATAPLANES=dp-1", // the default prefix; tests grant their own
		"KAFKA_HEAP=384m",
		"KAFKA_START_TIMEOUT=300", // a loaded 2-core machine takes minutes
	}
	env.pgEnv = []string{fmt.Sprintf("PGPORT=%d", ports[2]), "PG_HOME=" + filepath.Join(work, "pg"), "PG_TLS_DIR=" + env.certs}
	local := filepath.Join(root, "deployments", "local")
	if err := script(env.kafkaEnv, filepath.Join(local, "certs.sh"), "init"); err != nil {
		return 0, err
	}
	// A certificate the CA signed for a data plane that no ACL names.
	if err := script(env.kafkaEnv, filepath.Join(local, "certs.sh"), "issue", "dataplane-rogue"); err != nil {
		return 0, err
	}
	// The broker's start (the longest step) overlaps Postgres's and the builds.
	var wg sync.WaitGroup
	var kerr, perr, berr error
	wg.Go(func() { kerr = script(env.kafkaEnv, filepath.Join(local, "kafka-secure.sh"), "start") })
	wg.Go(func() { perr = script(env.pgEnv, filepath.Join(local, "postgres.sh"), "start") })
	wg.Go(func() { berr = buildAll(root) })
	wg.Wait()
	defer script(env.kafkaEnv, filepath.Join(local, "kafka-secure.sh"), "stop")
	defer script(env.pgEnv, filepath.Join(local, "postgres.sh"), "stop")
	if kerr != nil || perr != nil || berr != nil {
		return 0, fmt.Errorf("kafka: %v; postgres: %v; build: %v", kerr, perr, berr)
	}
	env.pgAdmin = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=verify-full&sslrootcert=%s", ports[2], filepath.Join(env.certs, "ca.crt"))
	env.pgPlain = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", ports[2])
	return m.Run(), nil
}

// buildAll builds the services and kafka-setup into env.bin.
func buildAll(root string) error {
	ctx := context.Background()
	if err := cluster.Build(ctx, root, env.bin); err != nil {
		return err
	}
	build := exec.Command("go", "build", "-o", filepath.Join(env.bin, "kafka-setup"), "./cmd/kafka-setup")
	build.Dir = filepath.Join(root, "e2e")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build kafka-setup: %v\n%s", err, out)
	}
	return nil
}

func script(extra []string, path string, args ...string) error {
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), extra...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	return nil
}

// prefix is a unique topic prefix for the test.
func prefix(t *testing.T) string {
	return "sec-" + strings.ReplaceAll(testsupport.Name(t), "_", "-") + "."
}

// grant creates the prefix's topics and the ACLs of broker.Grants for
// admin-api, the sync-gateway (group prefix+"sync") and the data planes
// (groups prefix+"dp-"+node), as the set-up principal.
func grant(t *testing.T, prefix string, dataplanes ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(env.bin, "kafka-setup"), "-brokers", env.kafka, "-prefix", prefix,
		"-sync-group", prefix+"sync", "-dp-group-prefix", prefix+"dp-", "-dataplanes", strings.Join(dataplanes, ","))
	cmd.Env = append(os.Environ(), principalEnv(broker.PrincipalSetup)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kafka-setup: %v\n%s", err, out)
	}
}

// principalEnv is the KAFKA_* environment of a service running as principal.
func principalEnv(principal string) []string {
	return []string{
		"KAFKA_BROKERS=" + env.kafka,
		"KAFKA_TLS_CA=" + filepath.Join(env.certs, "ca.crt"),
		"KAFKA_TLS_CERT=" + filepath.Join(env.certs, principal+".crt"),
		"KAFKA_TLS_KEY=" + filepath.Join(env.certs, principal+".key"),
	}
}

// clientTLS is the TLS configuration of principal ("" = no certificate).
func clientTLS(t *testing.T, principal string) *tls.Config {
	t.Helper()
	if principal == "" {
		pem, err := os.ReadFile(filepath.Join(env.certs, "ca.crt"))
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		return &tls.Config{RootCAs: pool}
	}
	cfg, err := broker.LoadTLS(filepath.Join(env.certs, "ca.crt"), filepath.Join(env.certs, principal+".crt"), filepath.Join(env.certs, principal+".key"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// proc is a service process of a test, stopped at the test's end (its log
// printed when the test failed).
type proc struct {
	name, log string
	cmd       *exec.Cmd
	done      chan struct{}
}

func spawn(t *testing.T, name, binary string, environ ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(filepath.Join(env.bin, binary))
	p.cmd.Env = append(os.Environ(), append([]string{"LOG_LEVEL=info"}, environ...)...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); f.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- %s log (end) ---\n%s", name, p.tail(6000))
		}
	})
	return p
}

func (p *proc) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// count is how many lines of the process's log contain s.
func (p *proc) count(s string) int {
	b, _ := os.ReadFile(p.log)
	return strings.Count(string(b), s)
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, within, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tlsEnv is principal's config.KafkaTLS.
func tlsEnv(principal string) config.KafkaTLS {
	return config.KafkaTLS{
		CA: filepath.Join(env.certs, "ca.crt"), Cert: filepath.Join(env.certs, principal+".crt"), Key: filepath.Join(env.certs, principal+".key"),
	}
}
