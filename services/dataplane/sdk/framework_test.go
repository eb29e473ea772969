package sdk_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin/keyauth"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin/ratelimit"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/proxy"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/services/dataplane/sdk"
)

// harness is a proxy with the built-in plugins and extra ones over a
// snapshot the test changes batch by batch, the way the consumer does.
type harness struct {
	t       *testing.T
	fw      plugin.Framework
	limiter *ratelimit.Limiter
	cur     atomic.Pointer[snapshot.Snapshot]
	px      *httptest.Server
	events  [][]snapshot.Event
}

func newHarness(t *testing.T, extra ...sdk.Plugin) *harness {
	return newHarnessOpts(t, plugin.Options{Tracking: true}, extra...)
}

func newHarnessOpts(t *testing.T, opts plugin.Options, extra ...sdk.Plugin) *harness {
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	h := &harness{t: t, limiter: ratelimit.New(log)}
	t.Cleanup(h.limiter.Close)
	plugins := []any{keyauth.Plugin(), h.limiter.Plugin()}
	for _, p := range extra {
		plugins = append(plugins, p)
	}
	fw, err := plugin.New(log, opts, plugins...)
	if err != nil {
		t.Fatal(err)
	}
	h.fw = fw
	s := snapshot.Empty()
	s.Seq = 1
	h.cur.Store(s)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "consumer=%s apikey=%s query=%s", r.Header.Get("X-Consumer-Username"), r.Header.Get("apikey"), r.URL.RawQuery)
	}))
	t.Cleanup(up.Close)
	h.px = httptest.NewServer(fw.Wrap(proxy.New(log, h.cur.Load, fw.Access)))
	t.Cleanup(h.px.Close)
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "http://"))
	h.apply(
		put("services/s1", fmt.Sprintf(`{"id":"s1","host":%q,"port":%s}`, host, port)),
		put("routes/open", `{"id":"open","paths":["/open"],"service":{"id":"s1"}}`),
		put("routes/auth", `{"id":"auth","paths":["/auth"],"service":{"id":"s1"}}`),
	)
	return h
}

func put(k, v string) snapshot.Write { return snapshot.Write{Key: k, Value: []byte(v)} }
func del(k string) snapshot.Write    { return snapshot.Write{Key: k} }

func (h *harness) apply(ws ...snapshot.Write) {
	h.t.Helper()
	cur := h.cur.Load()
	next, events, errs := cur.Apply(cur.Version+1, ws)
	if len(errs) > 0 {
		h.t.Fatal(errs)
	}
	next.Seq = cur.Seq + 1
	h.fw.Prepare(next, events, false)
	h.cur.Store(next)
	h.fw.Notify(next, events, false)
	h.events = append(h.events, events)
}

func (h *harness) get(path string, hdr map[string]string) (int, string, http.Header) {
	h.t.Helper()
	req, _ := http.NewRequest("GET", h.px.URL+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), resp.Header
}

// whoami is a test plugin that caches consumer data with no event code.
type whoamiConfig struct {
	ConsumerID string `json:"consumer_id"`
}

var whoamiSchema = &sdk.Schema{Name: "whoami", Priority: 100, Fields: []sdk.Field{{Name: "consumer_id", Type: sdk.String, Required: true}}}

type whoami struct {
	cfg   whoamiConfig
	loads *atomic.Int64
}

func (w *whoami) Access(c *sdk.Context) bool {
	v, err := c.Cached("whoami:"+w.cfg.ConsumerID, func(v *sdk.View) (any, error) {
		w.loads.Add(1)
		cons, ok := v.Consumer(w.cfg.ConsumerID)
		if !ok {
			return nil, fmt.Errorf("no consumer")
		}
		return cons.Username, nil
	})
	if err != nil {
		c.Respond(http.StatusForbidden, "unknown consumer")
		return false
	}
	c.ResponseHeader().Set("X-Whoami", v.(string))
	return true
}

func TestCacheFollowsEntityChangesWithoutRegistration(t *testing.T) {
	var loads atomic.Int64
	h := newHarness(t, sdk.Define(sdk.Definition[whoamiConfig]{
		Schema: whoamiSchema,
		New: func(_ sdk.Instance, cfg whoamiConfig) (sdk.Handler, error) {
			return &whoami{cfg: cfg, loads: &loads}, nil
		},
	}))
	h.apply(
		put("consumers/c1", `{"id":"c1","username":"alice"}`),
		put("plugins/p1", `{"id":"p1","name":"whoami","config":{"consumer_id":"c1"},"enabled":true}`),
	)
	steps := []struct {
		name      string
		change    []snapshot.Write
		wantCode  int
		wantName  string
		wantLoads int64
	}{
		{"first request loads", nil, 200, "alice", 1},
		{"second request is cached", nil, 200, "alice", 1},
		{"unrelated change keeps the entry", []snapshot.Write{put("consumers/c2", `{"id":"c2","username":"zed"}`)}, 200, "alice", 1},
		{"consumer update invalidates", []snapshot.Write{put("consumers/c1", `{"id":"c1","username":"bob"}`)}, 200, "bob", 2},
		{"cached again", nil, 200, "bob", 2},
		{"consumer delete invalidates", []snapshot.Write{del("consumers/c1")}, 403, "", 3},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.change != nil {
				h.apply(s.change...)
			}
			code, _, hdr := h.get("/open", nil)
			if code != s.wantCode || hdr.Get("X-Whoami") != s.wantName || loads.Load() != s.wantLoads {
				t.Fatalf("code %d whoami %q loads %d; want %d %q %d", code, hdr.Get("X-Whoami"), loads.Load(), s.wantCode, s.wantName, s.wantLoads)
			}
		})
	}
}

func TestEventsReachPlugins(t *testing.T) {
	var got []sdk.Event
	h := newHarness(t, sdk.Define(sdk.Definition[struct{}]{
		Schema: &sdk.Schema{Name: "listener"},
		New:    func(sdk.Instance, struct{}) (sdk.Handler, error) { return nil, nil },
		Events: func(evs []sdk.Event, _ bool) {
			got = append(got, evs...)
		},
	}))
	got = nil
	h.apply(put("consumers/c1", `{"id":"c1","username":"a"}`))
	h.apply(put("consumers/c1", `{"id":"c1","username":"b"}`))
	h.apply(del("consumers/c1"))
	want := []struct{ old, new string }{{"", `{"id":"c1","username":"a"}`}, {`{"id":"c1","username":"a"}`, `{"id":"c1","username":"b"}`}, {`{"id":"c1","username":"b"}`, ""}}
	if len(got) != len(want) {
		t.Fatalf("events = %d, want %d", len(got), len(want))
	}
	for i, w := range want {
		if string(got[i].Old) != w.old || string(got[i].New) != w.new || got[i].Type != "consumers" || got[i].ID != "c1" {
			t.Fatalf("event %d = %+v", i, got[i])
		}
	}
}

func TestKeyAuth(t *testing.T) {
	h := newHarness(t)
	h.apply(
		put("consumers/c1", `{"id":"c1","username":"alice"}`),
		put("keyauth_credentials/k1", `{"id":"k1","key":"secret-1","consumer":{"id":"c1"}}`),
		put("plugins/ka", `{"id":"ka","name":"key-auth","route":{"id":"auth"},"config":{"key_names":["apikey"],"hide_credentials":false},"enabled":true}`),
		put("plugins/ka2", `{"id":"ka2","name":"key-auth","route":{"id":"open"},"config":{"key_names":["apikey"],"hide_credentials":true,"key_in_query":true},"enabled":true}`),
	)
	cases := []struct {
		name, path string
		hdr        map[string]string
		code       int
		body       string
	}{
		{"no key", "/auth", nil, 401, `{"message":"No API key found in request"}`},
		{"wrong key", "/auth", map[string]string{"apikey": "nope"}, 401, `{"message":"Invalid authentication credentials"}`},
		{"key in header", "/auth", map[string]string{"apikey": "secret-1"}, 200, "consumer=alice apikey=secret-1 query="},
		{"key in query", "/auth?apikey=secret-1&x=1", nil, 200, "consumer=alice apikey= query=apikey=secret-1&x=1"},
		{"hide_credentials strips the header", "/open", map[string]string{"apikey": "secret-1"}, 200, "consumer=alice apikey= query="},
		{"hide_credentials strips the query", "/open?apikey=secret-1&x=1", nil, 200, "consumer=alice apikey= query=x=1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body, _ := h.get(c.path, c.hdr)
			if code != c.code || body != c.body {
				t.Fatalf("%d %q, want %d %q", code, body, c.code, c.body)
			}
		})
	}
	t.Run("credential deleted", func(t *testing.T) {
		h.apply(del("keyauth_credentials/k1"))
		if code, _, _ := h.get("/auth", map[string]string{"apikey": "secret-1"}); code != 401 {
			t.Fatalf("deleted key still accepted: %d", code)
		}
	})
	t.Run("disabled plugin", func(t *testing.T) {
		h.apply(put("plugins/ka", `{"id":"ka","name":"key-auth","route":{"id":"auth"},"config":{},"enabled":false}`))
		if code, _, _ := h.get("/auth", nil); code != 200 {
			t.Fatalf("disabled key-auth still enforced: %d", code)
		}
	})
}

func TestRateLimitingLocal(t *testing.T) {
	h := newHarness(t)
	plug := func(hour int) snapshot.Write {
		return put("plugins/rl", fmt.Sprintf(`{"id":"rl","name":"rate-limiting","route":{"id":"open"},"config":{"hour":%d,"day":100,"limit_by":"ip","policy":"local"},"enabled":true}`, hour))
	}
	h.apply(plug(3))
	hit := func() (int, string, http.Header) { return h.get("/open", nil) }
	for i := 1; i <= 2; i++ {
		code, _, hdr := hit()
		if code != 200 || hdr.Get("X-RateLimit-Limit-Hour") != "3" || hdr.Get("X-RateLimit-Remaining-Hour") != fmt.Sprint(3-i) || hdr.Get("X-RateLimit-Limit-Day") != "100" {
			t.Fatalf("request %d: %d %v", i, code, hdr)
		}
	}
	// Unrelated updates and a plugin update that keeps the limits do not
	// reset the counters.
	h.apply(put("routes/other", `{"id":"other","paths":["/other"],"service":{"id":"s1"}}`))
	h.apply(put("plugins/rl", `{"id":"rl","name":"rate-limiting","route":{"id":"open"},"config":{"hour":3,"day":100,"limit_by":"ip","policy":"local","hide_client_headers":false},"enabled":true,"tags":["x"]}`))
	if code, _, hdr := hit(); code != 200 || hdr.Get("X-RateLimit-Remaining-Hour") != "0" {
		t.Fatalf("third request: %d remaining %s", code, hdr.Get("X-RateLimit-Remaining-Hour"))
	}
	code, body, hdr := hit()
	if code != 429 || body != `{"message":"API rate limit exceeded"}` || hdr.Get("Retry-After") == "" {
		t.Fatalf("fourth request: %d %s %v", code, body, hdr)
	}
	// Other routes are not limited.
	if code, _, hdr := h.get("/other", nil); code != 200 || hdr.Get("X-RateLimit-Limit-Hour") != "" {
		t.Fatalf("other route: %d %v", code, hdr)
	}
	// New limits start new counters.
	h.apply(plug(10))
	if code, _, hdr := hit(); code != 200 || hdr.Get("X-RateLimit-Remaining-Hour") != "9" {
		t.Fatalf("after limit change: %d %v", code, hdr)
	}
	// Deleting the plugin frees its counters.
	h.apply(del("plugins/rl"))
	if n := h.limiter.LocalCounters(); n != 0 {
		t.Fatalf("%d counters left after the plugin was deleted", n)
	}
}

func TestRateLimitingByConsumer(t *testing.T) {
	h := newHarness(t)
	h.apply(
		put("consumers/c1", `{"id":"c1","username":"alice"}`),
		put("consumers/c2", `{"id":"c2","username":"bob"}`),
		put("keyauth_credentials/k1", `{"id":"k1","key":"k-alice","consumer":{"id":"c1"}}`),
		put("keyauth_credentials/k2", `{"id":"k2","key":"k-bob","consumer":{"id":"c2"}}`),
		put("plugins/ka", `{"id":"ka","name":"key-auth","service":{"id":"s1"},"config":{}}`),
		put("plugins/rl", `{"id":"rl","name":"rate-limiting","config":{"hour":1,"limit_by":"consumer"}}`),
	)
	if code, _, _ := h.get("/auth", map[string]string{"apikey": "k-alice"}); code != 200 {
		t.Fatalf("alice 1: %d", code)
	}
	if code, _, _ := h.get("/auth", map[string]string{"apikey": "k-alice"}); code != 429 {
		t.Fatalf("alice 2: %d", code)
	}
	if code, _, _ := h.get("/auth", map[string]string{"apikey": "k-bob"}); code != 200 {
		t.Fatalf("bob 1: %d", code)
	}
	// A consumer-scoped plugin overrides the global one for that consumer;
	// a consumer+route one only on its route.
	h.apply(
		put("plugins/rl-bob", `{"id":"rl-bob","name":"rate-limiting","consumer":{"id":"c2"},"config":{"hour":5,"limit_by":"consumer"}}`),
		put("plugins/rl-bob-open", `{"id":"rl-bob-open","name":"rate-limiting","consumer":{"id":"c2"},"route":{"id":"open"},"config":{"hour":7,"limit_by":"consumer"}}`),
		put("plugins/rl-alice-open", `{"id":"rl-alice-open","name":"rate-limiting","consumer":{"id":"c1"},"route":{"id":"open"},"config":{"hour":9,"limit_by":"consumer"}}`),
	)
	cases := []struct {
		path, key, limit string
	}{
		{"/auth", "k-bob", "5"},
		{"/open", "k-bob", "7"},
		{"/auth", "k-alice", "1"},
		{"/open", "k-alice", "9"},
	}
	for _, c := range cases {
		if _, _, hdr := h.get(c.path, map[string]string{"apikey": c.key}); hdr.Get("X-RateLimit-Limit-Hour") != c.limit {
			t.Fatalf("%s as %s: limit %q, want %s", c.path, c.key, hdr.Get("X-RateLimit-Limit-Hour"), c.limit)
		}
	}
}

func TestKeyAuthAnonymous(t *testing.T) {
	h := newHarness(t)
	h.apply(
		put("consumers/anon", `{"id":"anon","username":"guest"}`),
		put("plugins/ka", `{"id":"ka","name":"key-auth","route":{"id":"auth"},"config":{"anonymous":"guest"}}`),
	)
	if code, body, _ := h.get("/auth", nil); code != 200 || body != "consumer=guest apikey= query=" {
		t.Fatalf("anonymous: %d %q", code, body)
	}
	h.apply(put("plugins/ka", `{"id":"ka","name":"key-auth","route":{"id":"auth"},"config":{"anonymous":"nobody"}}`))
	if code, _, _ := h.get("/auth", nil); code != 500 {
		t.Fatalf("missing anonymous consumer: %d", code)
	}
}

func TestRateLimitingLimitBy(t *testing.T) {
	h := newHarness(t)
	h.apply(put("plugins/rl", `{"id":"rl","name":"rate-limiting","config":{"hour":1,"limit_by":"header","header_name":"X-Tenant"}}`))
	steps := []struct {
		tenant string
		code   int
	}{{"a", 200}, {"b", 200}, {"a", 429}, {"b", 429}}
	for i, s := range steps {
		if code, _, _ := h.get("/open", map[string]string{"X-Tenant": s.tenant}); code != s.code {
			t.Fatalf("step %d tenant %s: %d, want %d", i, s.tenant, code, s.code)
		}
	}
	h.apply(put("plugins/rl", `{"id":"rl","name":"rate-limiting","config":{"day":1,"limit_by":"service"}}`))
	if code, _, _ := h.get("/open", nil); code != 200 {
		t.Fatalf("first request of the service: %d", code)
	}
	if code, _, _ := h.get("/auth", nil); code != 429 {
		t.Fatalf("second route of the same service shares the limit: %d", code)
	}
}

// TestRateLimitingRefusedDoNotCount: a request refused with 429 is not
// counted, so a client hammering a full minute window does not use up its
// hour (Kong counts only the requests it lets through).
func TestRateLimitingRefusedDoNotCount(t *testing.T) {
	h := newHarness(t)
	h.apply(put("plugins/rl", `{"id":"rl","name":"rate-limiting","route":{"id":"open"},"config":{"minute":3,"hour":10,"limit_by":"ip","policy":"local"},"enabled":true}`))
	for i := 1; i <= 3; i++ {
		if code, _, _ := h.get("/open", nil); code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	for i := 4; i <= 8; i++ {
		code, _, hdr := h.get("/open", nil)
		if code != 429 || hdr.Get("X-RateLimit-Remaining-Minute") != "0" || hdr.Get("X-RateLimit-Remaining-Hour") != "7" {
			t.Fatalf("request %d: %d, remaining minute %s hour %s; want 429, 0 and 7 (refused requests do not count)",
				i, code, hdr.Get("X-RateLimit-Remaining-Minute"), hdr.Get("X-RateLimit-Remaining-Hour"))
		}
	}
}
