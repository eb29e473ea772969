package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
)

// TestXForwardedForChainExtended: a client's X-Forwarded-For chain reaches
// the upstream with the client's address appended, as Kong's
// $proxy_add_x_forwarded_for does; it is not replaced.
func TestXForwardedForChainExtended(t *testing.T) {
	got := make(chan []string, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Values("X-Forwarded-For")
	}))
	defer up.Close()
	h, p := hostPort(t, up.URL)
	px := newProxy(t, map[string]string{
		"services/s": fmt.Sprintf(`{"id":"s","host":%q,"port":%s}`, h, p),
		"routes/r":   `{"id":"r","paths":["/"],"service":{"id":"s"}}`,
	})
	cases := []struct {
		name string
		sent []string
		want string
	}{
		{"none", nil, "127.0.0.1"},
		{"one", []string{"203.0.113.7"}, "203.0.113.7, 127.0.0.1"},
		{"chain", []string{"203.0.113.7, 198.51.100.2"}, "203.0.113.7, 198.51.100.2, 127.0.0.1"},
		{"two headers", []string{"203.0.113.7", "198.51.100.2"}, "203.0.113.7, 198.51.100.2, 127.0.0.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", px.URL+"/x", nil)
			for _, v := range c.sent {
				req.Header.Add("X-Forwarded-For", v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if v := <-got; len(v) != 1 || v[0] != c.want {
				t.Fatalf("upstream got X-Forwarded-For %q, want %q", v, c.want)
			}
		})
	}
}

// TestKongResponseHeaders: proxied responses carry Via (Kong 3.8+'s
// "1.1 kong/<version>", appended to an upstream's own Via),
// X-Kong-Upstream-Latency and X-Kong-Proxy-Latency (milliseconds); the
// request upstream carries Via too. The proxy's own answers (404) carry
// none of the latency headers. An upstream's own X-Kong-* latencies are
// replaced.
func TestKongResponseHeaders(t *testing.T) {
	reqVia := make(chan []string, 2)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqVia <- r.Header.Values("Via")
		if r.URL.Path == "/chained" {
			w.Header().Set("Via", "1.1 origin-cache")
			w.Header().Set("X-Kong-Upstream-Latency", "999") // an upstream Kong's: replaced
		}
	}))
	defer up.Close()
	h, p := hostPort(t, up.URL)
	px := newProxy(t, map[string]string{
		"services/s": fmt.Sprintf(`{"id":"s","host":%q,"port":%s}`, h, p),
		"routes/r":   `{"id":"r","paths":["/"],"hosts":["api.test"],"service":{"id":"s"}}`,
	})
	for _, c := range []struct {
		path, clientVia, wantVia, wantReqVia string
	}{
		{"/plain", "", Via, Via},
		{"/chained", "1.0 client-proxy", "1.1 origin-cache, " + Via, "1.0 client-proxy, " + Via},
	} {
		req, _ := http.NewRequest("GET", px.URL+c.path, nil)
		req.Host = "api.test"
		if c.clientVia != "" {
			req.Header.Set("Via", c.clientVia)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Values("Via"); len(got) != 1 || got[0] != c.wantVia {
			t.Errorf("%s: response Via %q, want %q", c.path, got, c.wantVia)
		}
		if got := <-reqVia; len(got) != 1 || got[0] != c.wantReqVia {
			t.Errorf("%s: upstream request Via %q, want %q", c.path, got, c.wantReqVia)
		}
		for _, name := range []string{"X-Kong-Upstream-Latency", "X-Kong-Proxy-Latency"} {
			v := resp.Header.Values(name)
			if len(v) != 1 {
				t.Fatalf("%s: %s %q, want one value", c.path, name, v)
			}
			if n, err := strconv.Atoi(v[0]); err != nil || n < 0 {
				t.Errorf("%s: %s %q, want milliseconds", c.path, name, v[0])
			}
		}
	}
	resp, err := http.Get(px.URL + "/nowhere")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("X-Kong-Upstream-Latency") != "" {
		t.Fatalf("404: status %d, upstream latency %q", resp.StatusCode, resp.Header.Get("X-Kong-Upstream-Latency"))
	}
}
