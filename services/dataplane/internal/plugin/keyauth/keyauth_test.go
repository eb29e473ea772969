package keyauth_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin/keyauth"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/proxy"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	_ "github.com/deltaplane/deltaplane/services/dataplane/sdk" // sets plugin.New
)

// TestIdentityHeaders: a request with a valid key reaches the upstream
// with the consumer's id, username and custom_id and the credential's id
// (Kong's headers), twice in a row (the second from the cached identity),
// and a client's own X-Anonymous-Consumer removed.
func TestIdentityHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Clone() }))
	defer up.Close()
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "http://"))
	s, errs := snapshot.Build(1, map[string][]byte{
		"services/s":             []byte(fmt.Sprintf(`{"id":"s","host":%q,"port":%s}`, host, port)),
		"routes/r":               []byte(`{"id":"r","paths":["/api"],"service":{"id":"s"}}`),
		"consumers/c1":           []byte(`{"id":"c1","username":"alice","custom_id":"cust-1"}`),
		"keyauth_credentials/k1": []byte(`{"id":"k1","key":"secret-1","consumer":{"id":"c1"}}`),
		"plugins/ka":             []byte(`{"id":"ka","name":"key-auth","route":{"id":"r"},"config":{"key_names":["apikey"]},"enabled":true}`),
	})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	fw, err := plugin.New(log, plugin.Options{Tracking: true}, keyauth.Plugin())
	if err != nil {
		t.Fatal(err)
	}
	px := httptest.NewServer(fw.Wrap(proxy.New(log, func() *snapshot.Snapshot { return s }, fw.Access)))
	defer px.Close()
	want := map[string]string{"X-Consumer-Id": "c1", "X-Consumer-Username": "alice", "X-Consumer-Custom-Id": "cust-1", "X-Credential-Identifier": "k1"}
	for i := range 2 {
		req, _ := http.NewRequest("GET", px.URL+"/api", nil)
		req.Header.Set("apikey", "secret-1")
		req.Header.Set("X-Anonymous-Consumer", "true")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		h := <-got
		for k, v := range want {
			if vs := h.Values(k); len(vs) != 1 || vs[0] != v {
				t.Errorf("request %d: upstream got %s %q, want %q", i, k, vs, v)
			}
		}
		if vs := h.Values("X-Anonymous-Consumer"); len(vs) != 0 {
			t.Errorf("request %d: upstream got X-Anonymous-Consumer %q", i, vs)
		}
	}
}
