package router

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"testing"
)

func TestRegexLiteralPrefix(t *testing.T) {
	cases := []struct{ src, prefix string }{
		{`~/users/\d+$`, "/users/"},
		{`~/svc-000042/items/\d+$`, "/svc-000042/items/"},
		{`~/users/(?P<uid>\d+)`, "/users/"},
		{`~/a(bc)d\d`, "/abcd"},
		{`~/a(b|c)`, "/a"},
		{`~/abc|/abd`, "/ab"},
		{`~(?i)/abc`, ""},
		{`~/x(?i)abc`, "/x"},
		{`~\d+`, ""},
		{`~/é/\d`, "/é/"},
		{`~/a\x{FFFD}b`, "/a"},
		{`~^/anchored`, "/anchored"},
		{`~/a*`, "/"},
		{`~`, ""},
	}
	for _, c := range cases {
		rp, err := newRegexPath(c.src)
		if err != nil {
			t.Fatalf("%s: %v", c.src, err)
		}
		if rp.prefix != c.prefix {
			t.Errorf("%s: prefix %q, want %q", c.src, rp.prefix, c.prefix)
		}
	}
}

// sameAsCompiled checks that the route's lazy regex finds what the eagerly
// compiled pattern finds.
func sameAsCompiled(t testing.TB, src, path string) {
	rp, err := newRegexPath(src)
	want, cerr := regexp.Compile(regexExpr(src))
	if (err == nil) != (cerr == nil) {
		t.Fatalf("%q: parse error %v, compile error %v", src, err, cerr)
	}
	if err != nil {
		if err.Error() != cerr.Error() {
			t.Fatalf("%q: error %q, want %q", src, err, cerr)
		}
		return
	}
	_, got := rp.find(path)
	if w := want.FindStringSubmatchIndex(path); !slices.Equal(got, w) {
		t.Fatalf("%q on %q: %v, want %v (prefix %q)", src, path, got, w, rp.prefix)
	}
}

func TestRegexFindSameAsCompiled(t *testing.T) {
	for _, src := range []string{`~/users/\d+$`, `~/a(b|c)`, `~/abc|/abd`, `~(?i)/ABC`, `~/a\x{FFFD}b`, `~/é`, `~/(unclosed`, `~/users/(?P<uid>\d+)`} {
		for _, path := range []string{"", "/", "/users/42", "/users/x", "/ab", "/abd/x", "/abc", "/a\xffb", "/a\uFFFDb", "/é", "/\xc3"} {
			sameAsCompiled(t, src, path)
		}
	}
}

func FuzzRegexFind(f *testing.F) {
	f.Add(`~/users/\d+$`, "/users/42")
	f.Add(`~/a\x{FFFD}b`, "/a\xffb")
	f.Add(`~(?i)/abc|/x`, "/ABC")
	f.Fuzz(func(t *testing.T, src, path string) { sameAsCompiled(t, "~"+src, path) })
}

func TestRegexCompiledOnFirstUse(t *testing.T) {
	rt := build(t, `{"id":"re","paths":["~/users/(?P<uid>\\d+)"]}`)
	r, _ := rt.Get("re")
	rp := r.Regexes[0]
	req := func(path string) *Request {
		return &Request{Method: "GET", Host: "x", Path: path, Header: http.Header{}, Scheme: "http"}
	}
	if rp.re != nil {
		t.Fatal("compiled by Parse")
	}
	if m := rt.Match(req("/other/1")); m != nil || rp.re != nil {
		t.Fatalf("match %v, compiled %v for a path without the prefix", m, rp.re != nil)
	}
	if m := rt.Match(req("/users/7")); m == nil || m.Captures["uid"] != "7" || rp.re == nil {
		t.Fatalf("match %+v, compiled %v", m, rp.re != nil)
	}
}

// TestRegexConcurrentFirstUse matches from many goroutines at once on
// routes none of which is compiled yet (run with -race).
func TestRegexConcurrentFirstUse(t *testing.T) {
	b := New().Builder()
	for i := range 50 {
		b.Upsert(mustParse(t, fmt.Sprintf(`{"id":"r%02d","paths":["~/svc-%02d/items/(?P<n>\\d+)$"]}`, i, i)))
	}
	rt := b.Router()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for k := range 200 {
				i := (g + k) % 50
				path := fmt.Sprintf("/svc-%02d/items/%d", i, k)
				m := rt.Match(&Request{Method: "GET", Host: "x", Path: path, Header: http.Header{}, Scheme: "http"})
				if m == nil || m.Route.ID != fmt.Sprintf("r%02d", i) || m.Captures["n"] != fmt.Sprint(k) {
					errs <- fmt.Errorf("%s: %+v", path, m)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestRegexRoutesIndexedByPrefix: a request considers only the regex
// routes whose literal prefix starts its path, not every regex route of
// the bucket (with 1,000 regex routes without hosts, each request walked
// all 1,000); a regex without a literal prefix is still considered, and a
// route moved or deleted leaves no stale entry.
func TestRegexRoutesIndexedByPrefix(t *testing.T) {
	var routes []string
	for i := range 1000 {
		routes = append(routes, fmt.Sprintf(`{"id":"re-%d","paths":["~/svc-%06d/items/\\d+$"]}`, i, i))
	}
	routes = append(routes, `{"id":"no-prefix","paths":["~(?i)/CASE/\\d+$"]}`, `{"id":"plain","paths":["/svc-000007"]}`)
	rt := build(t, routes...)
	var seen []string
	rt.any.candidates("/svc-000007/items/12", func(r *Route) { seen = append(seen, r.ID) })
	slices.Sort(seen)
	seen = slices.Compact(seen)
	if want := []string{"no-prefix", "plain", "re-7"}; !slices.Equal(seen, want) {
		t.Fatalf("candidates %v, want %v", seen[:min(len(seen), 10)], want)
	}
	for path, want := range map[string]string{"/svc-000007/items/12": "re-7", "/case/3": "no-prefix", "/svc-000007/x": "plain", "/svc-000007/items/x": "plain"} {
		m := rt.Match(&Request{Method: "GET", Host: "x", Path: path, Header: http.Header{}, Scheme: "http"})
		if m == nil || m.Route.ID != want {
			t.Errorf("%s matched %v, want %s", path, m, want)
		}
	}
	b := rt.Builder()
	b.Upsert(mustParse(t, `{"id":"re-7","paths":["~/moved/\\d+$"]}`))
	b.Delete("re-8")
	rt2 := b.Router()
	for path, want := range map[string]string{"/svc-000007/items/12": "plain", "/moved/1": "re-7", "/svc-000008/items/1": ""} {
		m := rt2.Match(&Request{Method: "GET", Host: "x", Path: path, Header: http.Header{}, Scheme: "http"})
		got := ""
		if m != nil {
			got = m.Route.ID
		}
		if got != want {
			t.Errorf("after the update, %s matched %q, want %q", path, got, want)
		}
	}
}
