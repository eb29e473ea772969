package router

import (
	"fmt"
	"net/http"
	"testing"
)

func mustParse(t testing.TB, js string) *Route {
	t.Helper()
	r, err := Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func build(t testing.TB, routes ...string) *Router {
	b := New().Builder()
	for _, js := range routes {
		b.Upsert(mustParse(t, js))
	}
	return b.Router()
}

func TestMatch(t *testing.T) {
	rt := build(t,
		`{"id":"root","paths":["/"]}`,
		`{"id":"api","paths":["/api"]}`,
		`{"id":"api-v1","paths":["/api/v1"]}`,
		`{"id":"api-post","paths":["/api"],"methods":["POST"]}`,
		`{"id":"host-only","hosts":["example.com"]}`,
		`{"id":"host-api","hosts":["example.com"],"paths":["/api"]}`,
		`{"id":"wild-suffix","hosts":["*.wild.test"]}`,
		`{"id":"wild-prefix","hosts":["shop.*"]}`,
		`{"id":"plain-beats-wild","hosts":["a.wild.test"]}`,
		`{"id":"hdr","paths":["/api"],"headers":{"x-version":["2","3"]}}`,
		`{"id":"hdr-re","paths":["/h"],"headers":{"x-team":["~*^blue"]}}`,
		`{"id":"re-low","paths":["~/users/\\d+$"],"regex_priority":1}`,
		`{"id":"re-high","paths":["~/users/(?P<uid>\\d+)"],"regex_priority":5}`,
		`{"id":"exact-vs-regex","paths":["/users/7"]}`,
		`{"id":"https-only","paths":["/secure"],"protocols":["https"]}`,
		`{"id":"older","paths":["/tie"],"created_at":1}`,
		`{"id":"newer","paths":["/tie"],"created_at":2}`,
	)
	cases := []struct {
		name, method, host, path string
		header                   http.Header
		want                     string // route id, "" = no match
		matched                  string
	}{
		{"root catches everything", "GET", "x", "/nothing", nil, "root", "/"},
		{"longest prefix", "GET", "x", "/api/v1/things", nil, "api-v1", "/api/v1"},
		{"prefix", "GET", "x", "/api/other", nil, "api", "/api"},
		{"method adds a criterion", "POST", "x", "/api/other", nil, "api-post", "/api"},
		{"host and path beat path and method", "POST", "example.com", "/api", nil, "host-api", "/api"},
		{"host only", "GET", "example.com:8000", "/z", nil, "host-only", ""},
		{"host is case-insensitive", "GET", "EXAMPLE.com", "/z", nil, "host-only", ""},
		{"wildcard suffix", "GET", "b.wild.test", "/z", nil, "wild-suffix", ""},
		{"wildcard prefix", "GET", "shop.example.org", "/z", nil, "wild-prefix", ""},
		{"plain host beats wildcard", "GET", "a.wild.test", "/z", nil, "plain-beats-wild", ""},
		{"wildcard needs a label", "GET", "wild.test", "/z", nil, "root", "/"},
		{"header match", "GET", "x", "/api", http.Header{"X-Version": {"3"}}, "hdr", "/api"},
		{"header mismatch falls back", "GET", "x", "/api", http.Header{"X-Version": {"4"}}, "api", "/api"},
		{"header regex", "GET", "x", "/h", http.Header{"X-Team": {"BlueBird"}}, "hdr-re", "/h"},
		{"regex priority", "GET", "x", "/users/42", nil, "re-high", "/users/42"},
		{"exact path beats regex", "GET", "x", "/users/7", nil, "exact-vs-regex", "/users/7"},
		{"regex beats shorter prefix", "GET", "x", "/users/42/x", nil, "re-high", "/users/42"},
		{"protocol filters", "GET", "x", "/secure", nil, "root", "/"},
		{"older route wins a tie", "GET", "x", "/tie", nil, "older", "/tie"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := c.header
			if h == nil {
				h = http.Header{}
			}
			m := rt.Match(&Request{Method: c.method, Host: c.host, Path: c.path, Header: h, Scheme: "http"})
			got := ""
			if m != nil {
				got = m.Route.ID
			}
			if got != c.want {
				t.Fatalf("matched %q, want %q", got, c.want)
			}
			if m != nil && m.MatchedPath != c.matched {
				t.Fatalf("matched path %q, want %q", m.MatchedPath, c.matched)
			}
		})
	}
}

func TestNoMatch(t *testing.T) {
	rt := build(t, `{"id":"a","paths":["/a"]}`, `{"id":"h","hosts":["h.test"]}`)
	if m := rt.Match(&Request{Method: "GET", Host: "x", Path: "/b", Header: http.Header{}, Scheme: "http"}); m != nil {
		t.Fatalf("matched %s", m.Route.ID)
	}
}

func TestRegexCaptures(t *testing.T) {
	rt := build(t, `{"id":"re","paths":["~/users/(?P<uid>\\d+)"]}`)
	m := rt.Match(&Request{Method: "GET", Host: "x", Path: "/users/42/profile", Header: http.Header{}, Scheme: "http"})
	if m == nil || m.Captures["uid"] != "42" || m.Captures["1"] != "42" {
		t.Fatalf("captures = %+v", m)
	}
}

func TestUpdatesArePersistent(t *testing.T) {
	v1 := build(t, `{"id":"a","paths":["/a"]}`, `{"id":"b","hosts":["b.test"],"paths":["/b"]}`)
	b := v1.Builder()
	b.Upsert(mustParse(t, `{"id":"a","paths":["/moved"]}`))
	b.Delete("b")
	v2 := b.Router()
	req := func(host, path string) *Request {
		return &Request{Method: "GET", Host: host, Path: path, Header: http.Header{}, Scheme: "http"}
	}
	cases := []struct {
		name string
		rt   *Router
		r    *Request
		want string
	}{
		{"old router keeps old path", v1, req("x", "/a"), "a"},
		{"old router keeps deleted route", v1, req("b.test", "/b"), "b"},
		{"new router drops old path", v2, req("x", "/a"), ""},
		{"new router has new path", v2, req("x", "/moved/x"), "a"},
		{"new router dropped deleted route", v2, req("b.test", "/b"), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ""
			if m := c.rt.Match(c.r); m != nil {
				got = m.Route.ID
			}
			if got != c.want {
				t.Fatalf("matched %q, want %q", got, c.want)
			}
		})
	}
	if v1.Len() != 2 || v2.Len() != 1 {
		t.Fatalf("lens %d %d", v1.Len(), v2.Len())
	}
}

func TestParseRejectsBadRegex(t *testing.T) {
	if _, err := Parse([]byte(`{"id":"r","paths":["~/(unclosed"]}`)); err == nil {
		t.Fatal("bad regex accepted")
	}
}

func BenchmarkMatch30k(b *testing.B) {
	bl := New().Builder()
	for i := range 30000 {
		bl.Upsert(mustParse(b, fmt.Sprintf(`{"id":"r%05d","hosts":["h%d.test"],"paths":["/p%d"]}`, i, i%100, i)))
	}
	rt := bl.Router()
	req := &Request{Method: "GET", Host: "h42.test", Path: "/p4242/x", Header: http.Header{}, Scheme: "http"}
	b.ReportAllocs()
	for b.Loop() {
		if m := rt.Match(req); m == nil || m.Route.ID != "r04242" {
			b.Fatal("no match")
		}
	}
}

func FuzzParseAndMatch(f *testing.F) {
	f.Add(`{"id":"a","paths":["/a","~/b(\\d+)"],"hosts":["*.x.test","y.*"],"headers":{"x":["~*z"]}}`, "GET", "q.x.test:80", "/b12")
	f.Add(`{"id":"b","methods":["get"]}`, "GET", "", "")
	f.Fuzz(func(t *testing.T, route, method, host, path string) {
		r, err := Parse([]byte(route))
		if err != nil {
			return
		}
		b := New().Builder()
		b.Upsert(r)
		rt := b.Router()
		m := rt.Match(&Request{Method: method, Host: host, Path: path, Header: http.Header{}, Scheme: "http"})
		if m != nil && m.Route != r {
			t.Fatal("matched a route that is not in the router")
		}
		b = rt.Builder()
		b.Delete(r.ID)
		if rt2 := b.Router(); rt2.Len() != 0 || rt2.Match(&Request{Method: method, Host: host, Path: path, Header: http.Header{}, Scheme: "http"}) != nil {
			t.Fatal("deleted route still matches")
		}
	})
}

// TestMatchSNIs: routes' snis are a criterion on TLS connections (ranked
// below methods, as in Kong's traditional router) and are not checked on
// plain HTTP.
func TestMatchSNIs(t *testing.T) {
	rt := build(t,
		`{"id":"plain","paths":["/x"]}`,
		`{"id":"sni","paths":["/x"],"snis":["A.example.com"]}`,
		`{"id":"post","paths":["/x"],"methods":["POST"]}`,
	)
	for _, c := range []struct {
		method, sni string
		tls         bool
		want        string
	}{
		{"GET", "a.example.com", true, "sni"},
		{"GET", "A.EXAMPLE.COM", true, "sni"},
		{"GET", "b.example.com", true, "plain"},
		{"GET", "", true, "plain"},
		{"GET", "", false, "sni"}, // not checked without TLS: the more specific route
		{"POST", "a.example.com", true, "post"},
	} {
		m := rt.Match(&Request{Method: c.method, Path: "/x", Scheme: "https", TLS: c.tls, SNI: c.sni})
		if c.tls == false {
			m = rt.Match(&Request{Method: c.method, Path: "/x", Scheme: "http"})
		}
		if m == nil || m.Route.ID != c.want {
			t.Errorf("%s sni %q tls %v: %v, want %s", c.method, c.sni, c.tls, m, c.want)
		}
	}
}
