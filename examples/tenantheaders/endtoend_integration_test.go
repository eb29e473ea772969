//go:build integration

package tenantheaders_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/e2e/cluster"
)

const wait = 60 * time.Second

// TestEndToEnd runs the example data plane (cmd/myplane: the built-in
// plugins plus tenant-headers, built by dataplane.Main) against admin-api
// and the sync-gateway on real Kafka and Postgres. admin-api knows the
// plugin's schema from the files "myplane schemas -out DIR" writes. After
// each update or delete of an entity the plugin's cached value derives
// from (the consumer's custom_id and tags, the route's tier tag, the
// service's name; the consumer deleted and created again), the very next
// request through every data plane must carry the new value.
//
// A third data plane runs with the framework's tracking switched off
// (DP_PLUGIN_CACHE_TRACKING=false): it must serve a stale value at least
// once, or the test would prove nothing. EXAMPLES_TRACKING=false switches
// tracking off on the two checked data planes too, and the test fails.
func TestEndToEnd(t *testing.T) {
	for _, v := range []string{"DELTAPLANE_TEST_KAFKA", "DELTAPLANE_TEST_POSTGRES"} {
		if os.Getenv(v) == "" {
			t.Fatalf("%s is not set; run the tests with make test", v)
		}
	}
	ctx := t.Context()
	bin := t.TempDir()
	if err := cluster.Build(ctx, "../..", bin); err != nil {
		t.Fatal(err)
	}
	// The example data plane replaces the stock one.
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, "dataplane"), "./cmd/myplane")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build myplane: %v\n%s", err, out)
	}
	schemas := t.TempDir()
	if out, err := exec.CommandContext(ctx, filepath.Join(bin, "dataplane"), "schemas", "-out", schemas).CombinedOutput(); err != nil {
		t.Fatalf("myplane schemas: %v\n%s", err, out)
	}

	name := fmt.Sprintf("ex-tenant-%d", time.Now().UnixNano()%1e9)
	c, err := cluster.Start(ctx, cluster.Options{
		Name: name, Kafka: os.Getenv("DELTAPLANE_TEST_KAFKA"), PostgresAdmin: os.Getenv("DELTAPLANE_TEST_POSTGRES"),
		BinDir: bin, WorkDir: t.TempDir(), Env: []string{"ADMIN_PLUGIN_SCHEMAS_DIR=" + schemas},
	})
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				for _, p := range c.Processes() {
					t.Logf("--- %s\n%s", p.Name, p.LogTail(30))
				}
			}
			c.Close()
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	tracking := "true"
	if os.Getenv("EXAMPLES_TRACKING") == "false" {
		tracking = "false"
	}
	var dps []*cluster.Dataplane
	for _, node := range []string{"dp1", "dp2", "untracked"} {
		tr := tracking
		if node == "untracked" {
			tr = "false"
		}
		dp, err := c.StartDataplane(ctx, node, "DP_PLUGIN_CACHE_TRACKING="+tr)
		if err != nil {
			t.Fatal(err)
		}
		dps = append(dps, dp)
	}
	control := dps[2]

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{
			"id": r.Header.Get("X-Tenant-Id"), "tags": r.Header.Get("X-Tenant-Tags"),
			"tier": r.Header.Get("X-Tenant-Tier"), "service": r.Header.Get("X-Tenant-Service"),
		})
	}))
	defer upstream.Close()
	a := admin{t: t, base: c.Admin}

	// admin-api knows the custom plugin: its schema, and its checks.
	if code, body := a.call("GET", "/plugins/enabled", ""); code != 200 || !strings.Contains(body, `"tenant-headers"`) {
		t.Fatalf("/plugins/enabled = %d %s", code, body)
	}
	if code, body := a.call("GET", "/schemas/plugins/tenant-headers", ""); code != 200 || !strings.Contains(body, `"user_header"`) {
		t.Fatalf("/schemas/plugins/tenant-headers = %d %s", code, body)
	}
	host := strings.TrimPrefix(upstream.URL, "http://")
	h, port, _ := strings.Cut(host, ":")
	a.must(201, "POST", "/services", fmt.Sprintf(`{"name":"billing","host":%q,"port":%s}`, h, port))
	a.must(201, "POST", "/services/billing/routes", `{"name":"r1","paths":["/t"],"tags":["tier=gold"]}`)
	a.must(201, "POST", "/consumers", `{"username":"alice","custom_id":"acme-1","tags":["eu"]}`)
	for _, bad := range []struct{ body, want string }{
		{`{"name":"tenant-headers","route":{"name":"r1"},"config":{"prefix":"X"}}`, `"fields":{"config":{"prefix":"length must be at least 3"}}`},
		{`{"name":"tenant-headers","route":{"name":"r1"},"config":{"nope":1}}`, `"fields":{"config":{"nope":"unknown field"}}`},
		{`{"name":"tenant-header","route":{"name":"r1"}}`, `"fields":{"name":"plugin 'tenant-header' not enabled; add it to the 'plugins' configuration property"}`},
	} {
		code, body := a.call("POST", "/plugins", bad.body)
		if code != 400 || !strings.Contains(body, bad.want) || !strings.Contains(body, `"name":"schema violation"`) {
			t.Fatalf("POST /plugins %s = %d %s, want 400 with %s", bad.body, code, body, bad.want)
		}
	}
	a.must(201, "POST", "/plugins", `{"name":"tenant-headers","route":{"name":"r1"}}`)

	steps := []struct {
		name, method, path, body string
		want                     map[string]string
	}{
		{"initial", "", "", "", map[string]string{"id": "acme-1", "tags": "eu", "tier": "gold", "service": "billing"}},
		{"consumer custom_id updated", "PATCH", "/consumers/alice", `{"custom_id":"acme-2"}`, map[string]string{"id": "acme-2", "tags": "eu", "tier": "gold", "service": "billing"}},
		{"consumer tags updated", "PATCH", "/consumers/alice", `{"tags":["eu","vip"]}`, map[string]string{"id": "acme-2", "tags": "eu,vip", "tier": "gold", "service": "billing"}},
		{"route's tier updated", "PATCH", "/routes/r1", `{"tags":["tier=platinum"]}`, map[string]string{"id": "acme-2", "tags": "eu,vip", "tier": "platinum", "service": "billing"}},
		{"service renamed", "PATCH", "/services/billing", `{"name":"billing-v2"}`, map[string]string{"id": "acme-2", "tags": "eu,vip", "tier": "platinum", "service": "billing-v2"}},
		{"consumer deleted", "DELETE", "/consumers/alice", "", map[string]string{"id": "anonymous", "tags": "", "tier": "platinum", "service": "billing-v2"}},
		{"consumer created again", "POST", "/consumers", `{"username":"alice","custom_id":"acme-3"}`, map[string]string{"id": "acme-3", "tags": "", "tier": "platinum", "service": "billing-v2"}},
		{"route's tier removed", "PATCH", "/routes/r1", `{"tags":[]}`, map[string]string{"id": "acme-3", "tags": "", "tier": "standard", "service": "billing-v2"}},
	}
	var stale, controlStale []string
	for i, s := range steps {
		tx := ""
		if s.method != "" {
			tx = a.write(s.method, s.path, s.body)
		} else {
			tx = a.write("PATCH", "/plugins/"+a.pluginID(), `{"enabled":true}`) // the plugin itself, to wait on
		}
		version := a.version(tx)
		for _, dp := range dps {
			waitVersion(t, dp, version)
		}
		for _, dp := range dps {
			// Exactly one request per data plane: the very next one.
			got, respID := request(t, dp)
			ok := equal(got, s.want) && respID == s.want["id"]
			switch {
			case ok:
			case dp == control:
				controlStale = append(controlStale, s.name)
			default:
				stale = append(stale, fmt.Sprintf("step %d %q on %s: upstream saw %v, client saw X-Tenant-Id %q; want %v", i, s.name, dp.NodeID, got, respID, s.want))
			}
		}
	}
	for _, s := range stale {
		t.Error(s)
	}
	if len(controlStale) == 0 {
		t.Error("the data plane without tracking never served a stale value: the test would not catch a missing invalidation")
	}
	t.Logf("the data plane without tracking was stale after: %s", strings.Join(controlStale, "; "))
}

type admin struct {
	t      *testing.T
	base   string
	plugin string
}

func (a *admin) call(method, path, body string) (int, string) {
	code, b, _ := a.callHdr(method, path, body)
	return code, b
}

func (a *admin) callHdr(method, path, body string) (int, string, http.Header) {
	a.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, _ := http.NewRequestWithContext(a.t.Context(), method, a.base+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (a *admin) must(want int, method, path, body string) string {
	a.t.Helper()
	code, b, _ := a.callHdr(method, path, body)
	if code != want {
		a.t.Fatalf("%s %s = %d %s, want %d", method, path, code, b, want)
	}
	return b
}

// write sends a write that must succeed and returns its transaction.
func (a *admin) write(method, path, body string) string {
	a.t.Helper()
	code, b, hdr := a.callHdr(method, path, body)
	if code/100 != 2 || hdr.Get("Deltaplane-Tx") == "" {
		a.t.Fatalf("%s %s = %d %s (tx %q)", method, path, code, b, hdr.Get("Deltaplane-Tx"))
	}
	return hdr.Get("Deltaplane-Tx")
}

func (a *admin) pluginID() string {
	if a.plugin == "" {
		var list struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
		}
		json.Unmarshal([]byte(a.must(200, "GET", "/plugins", "")), &list)
		if len(list.Data) != 1 {
			a.t.Fatalf("plugins: %+v", list)
		}
		a.plugin = list.Data[0].ID
	}
	return a.plugin
}

// version is the configuration version transaction tx became.
func (a *admin) version(tx string) uint64 {
	a.t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		var ch struct {
			Version uint64 `json:"version"`
		}
		if code, b := a.call("GET", "/clustering/changes/"+tx, ""); code == 200 && json.Unmarshal([]byte(b), &ch) == nil && ch.Version > 0 {
			return ch.Version
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.t.Fatalf("transaction %s got no version within %s", tx, wait)
	return 0
}

// waitVersion polls the data plane's /status until it applied version.
func waitVersion(t *testing.T, dp *cluster.Dataplane, version uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	for ctx.Err() == nil {
		var st struct {
			Version uint64 `json:"version"`
		}
		if resp, err := http.Get(dp.Status + "/status"); err == nil {
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.Version >= version {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s did not apply version %d within %s", dp.NodeID, version, wait)
}

// request sends one request as alice and returns what the upstream saw and
// the X-Tenant-Id the client got.
func request(t *testing.T, dp *cluster.Dataplane) (map[string]string, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", dp.Proxy+"/t/x", nil)
	req.Header.Set("X-User", "alice")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]string
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(b, &got) != nil {
		t.Fatalf("%s: %d %s", dp.NodeID, resp.StatusCode, b)
	}
	return got, resp.Header.Get("X-Tenant-Id")
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
