package proxy

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"testing"
)

// TestRewriteHeaders: the request sent upstream carries Kong's
// X-Forwarded-* headers and Via, with the client's chain extended.
func TestRewriteHeaders(t *testing.T) {
	p := New(slog.New(slog.NewJSONHandler(io.Discard, nil)), nil, nil)
	pr := rewriteRequest(true)
	p.rewrite(pr)
	want := map[string]string{
		"X-Forwarded-For":    "203.0.113.7, 192.0.2.1",
		"X-Forwarded-Host":   "api.example.com",
		"X-Forwarded-Proto":  "http",
		"X-Forwarded-Port":   "8000",
		"X-Forwarded-Path":   "/api/users",
		"X-Forwarded-Prefix": "/api",
		"Via":                Via,
	}
	for k, v := range want {
		if got := pr.Out.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if pr.Out.URL.Host != "10.0.0.1:8080" || pr.Out.URL.Path != "/users" || pr.Out.Host != "backend" {
		t.Errorf("upstream URL %s, Host %s", pr.Out.URL, pr.Out.Host)
	}
}

// TestRewriteAllocations: setting the upstream request's headers costs at
// most one allocation per request from a client without an
// X-Forwarded-For chain (the header values that differ per request share
// one array; the port, scheme and Via values are shared by all).
func TestRewriteAllocations(t *testing.T) {
	p := New(slog.New(slog.NewJSONHandler(io.Discard, nil)), nil, nil)
	pr := rewriteRequest(false)
	if n := testing.AllocsPerRun(200, func() { p.rewrite(pr) }); n > 1 {
		t.Errorf("rewrite allocates %.0f times per request, want at most 1", n)
	}
}

func rewriteRequest(chain bool) *httputil.ProxyRequest {
	in := httptest.NewRequest("GET", "http://api.example.com/api/users", nil)
	in.RemoteAddr = "192.0.2.1:40000"
	if chain {
		in.Header.Set("X-Forwarded-For", "203.0.113.7")
	}
	rt := &routing{scheme: "http", target: "10.0.0.1:8080", host: "backend", path: "/users", prefix: "/api"}
	ctx := context.WithValue(in.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8000})
	in = in.WithContext(&routingCtx{Context: ctx, rt: rt})
	out := in.Clone(in.Context())
	delete(out.Header, "X-Forwarded-For") // as ReverseProxy does before Rewrite
	return &httputil.ProxyRequest{In: in, Out: out}
}

// TestBufferPoolAllocations: a copy buffer taken from the pool and put
// back costs no allocation.
func TestBufferPoolAllocations(t *testing.T) {
	var p bufferPool
	p.Put(p.Get())
	if n := testing.AllocsPerRun(100, func() { p.Put(p.Get()) }); n > 0 {
		t.Errorf("Get and Put allocate %.0f times, want none", n)
	}
}
