//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/e2e/cluster"
	"github.com/deltaplane/deltaplane/shared/testsupport"
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
	if err == nil {
		err = cluster.Build(context.Background(), "..", dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// system is one isolated deltaplane for a test.
type system struct {
	*cluster.Cluster
	t     *testing.T
	kafka string
}

type dataplane = cluster.Dataplane

func uniqueName(t *testing.T) string {
	return "e2e-" + strings.ReplaceAll(testsupport.Name(t), "_", "-")
}

// newSystem starts admin-api and the sync-gateway; the test's cleanup stops
// everything and, when the test failed, prints the end of every log.
func newSystem(t *testing.T, env ...string) *system {
	t.Helper()
	return startNamedSystem(t, uniqueName(t), env...)
}

// startNamedSystem is newSystem with a name chosen by the caller, so that a
// test knows the topic prefix before the services start and can create the
// topics itself.
func startNamedSystem(t *testing.T, name string, env ...string) *system {
	t.Helper()
	c, err := cluster.Start(t.Context(), cluster.Options{
		Name:          name,
		Kafka:         os.Getenv("DELTAPLANE_TEST_KAFKA"),
		PostgresAdmin: os.Getenv("DELTAPLANE_TEST_POSTGRES"),
		BinDir:        binDir,
		WorkDir:       t.TempDir(),
		LogLevel:      "debug",
		Env:           env,
	})
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				for _, p := range c.Processes() {
					t.Logf("---- end of %s's log ----\n%s", p.Name, p.LogTail(5000))
				}
			}
			c.Close()
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return &system{Cluster: c, t: t, kafka: os.Getenv("DELTAPLANE_TEST_KAFKA")}
}

func (s *system) startDataplane(node string, env ...string) *dataplane {
	s.t.Helper()
	dp, err := s.StartDataplane(s.t.Context(), node, env...)
	if err != nil {
		s.t.Fatal(err)
	}
	return dp
}

func (s *system) restart(p *cluster.Process) {
	s.t.Helper()
	if err := p.Start(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *system) waitHealthy(url string) {
	s.t.Helper()
	if err := cluster.WaitHTTP(s.t.Context(), url, 60*time.Second); err != nil {
		s.t.Fatal(err)
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

// mustDo is do with an expected status; it returns the decoded body.
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

func statusDoc(t *testing.T, dp *dataplane) map[string]any {
	t.Helper()
	return mustDo(t, 200, "GET", dp.Status+"/status", nil)
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

// countRows counts rows of a table (with an optional WHERE) in the
// system's database.
func (s *system) countRows(tableAndWhere string) int {
	s.t.Helper()
	db, err := s.DB()
	if err != nil {
		s.t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(s.t.Context(), "SELECT count(*) FROM "+tableAndWhere).Scan(&n); err != nil {
		s.t.Fatalf("count %s: %v", tableAndWhere, err)
	}
	return n
}

func decodeJSON(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
