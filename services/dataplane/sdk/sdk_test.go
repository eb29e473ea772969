package sdk_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin"
	"github.com/deltaplane/deltaplane/services/dataplane/sdk"
)

// byName is a test plugin: it looks a consumer up by the username in
// X-User (a lookup that depends on every consumer) and answers with its
// custom_id in the request to the upstream and, in the response phase, to
// the client.
type byNameConfig struct {
	Header string `json:"header"`
}

type byName struct{ cfg byNameConfig }

func (b *byName) Access(c *sdk.Context) bool {
	user := c.Header().Get("X-User")
	v, _ := c.Cached("by-name:"+user, func(v *sdk.View) (any, error) {
		if cons, ok := v.ConsumerByUsername(user); ok {
			return cons.CustomID, nil
		}
		return "none", nil
	})
	c.Header().Set(b.cfg.Header, v.(string))
	return true
}

func (b *byName) Response(c *sdk.Context, status int, h http.Header) {
	h.Set(b.cfg.Header, c.Header().Get(b.cfg.Header)+" "+http.StatusText(status))
}

func byNamePlugin() sdk.Plugin {
	return sdk.Define(sdk.Definition[byNameConfig]{
		Schema: &sdk.Schema{Name: "by-name", Fields: []sdk.Field{{Name: "header", Type: sdk.String, Default: "X-Custom-Id"}}},
		New:    func(_ sdk.Instance, cfg byNameConfig) (sdk.Handler, error) { return &byName{cfg: cfg}, nil },
	})
}

// TestLookupsFollowCreatesAndResponsePhase: a value derived from a lookup
// that found nothing is dropped when the consumer appears; the response
// phase sees the upstream's status.
func TestLookupsFollowCreatesAndResponsePhase(t *testing.T) {
	h := newHarness(t, byNamePlugin())
	h.apply(put("plugins/b", `{"id":"b","name":"by-name","route":{"id":"open"},"config":{},"enabled":true}`))
	hdr := map[string]string{"X-User": "carol"}
	if _, _, got := h.get("/open", hdr); got.Get("X-Custom-Id") != "none OK" {
		t.Fatalf("before: %q", got.Get("X-Custom-Id"))
	}
	h.apply(put("consumers/c9", `{"id":"c9","username":"carol","custom_id":"cid-9"}`))
	if _, _, got := h.get("/open", hdr); got.Get("X-Custom-Id") != "cid-9 OK" {
		t.Fatalf("after the consumer was created: %q", got.Get("X-Custom-Id"))
	}
}

// TestTrackingOffServesStale: with the framework's tracking off the same
// change is missed, which is what the tracking tests rely on to prove
// something.
func TestTrackingOffServesStale(t *testing.T) {
	h := newHarnessOpts(t, plugin.Options{Tracking: false}, byNamePlugin())
	h.apply(put("plugins/b", `{"id":"b","name":"by-name","route":{"id":"open"},"config":{},"enabled":true}`),
		put("consumers/c9", `{"id":"c9","username":"carol","custom_id":"cid-9"}`))
	hdr := map[string]string{"X-User": "carol"}
	h.get("/open", hdr)
	h.apply(put("consumers/c9", `{"id":"c9","username":"carol","custom_id":"cid-10"}`))
	if _, _, got := h.get("/open", hdr); got.Get("X-Custom-Id") != "cid-9 OK" {
		t.Fatalf("tracking off: %q, want the stale cid-9", got.Get("X-Custom-Id"))
	}
}

// TestPluginThatCannotRunFailsClosed: a plugin this data plane does not
// have, or a config its schema refuses (admin-api refuses it too, so only
// version skew gets here), answers 500 on the routes it applies to instead
// of letting requests through without it; other routes are unaffected.
func TestPluginThatCannotRunFailsClosed(t *testing.T) {
	h := newHarness(t, byNamePlugin())
	h.apply(put("plugins/b", `{"id":"b","name":"by-name","route":{"id":"open"},"config":{"header":5},"enabled":true}`),
		put("plugins/x", `{"id":"x","name":"not-here","route":{"id":"auth"},"config":{},"enabled":true}`))
	for _, path := range []string{"/open", "/auth"} {
		if code, body, _ := h.get(path, nil); code != 500 || body != `{"message":"An unexpected error occurred"}` {
			t.Fatalf("%s: %d %s", path, code, body)
		}
	}
	h.apply(put("plugins/b", `{"id":"b","name":"by-name","route":{"id":"open"},"config":{"header":"X-Fixed"},"enabled":true}`))
	if code, _, got := h.get("/open", nil); code != 200 || got.Get("X-Fixed") == "" {
		t.Fatalf("after the config was fixed: %d %v", code, got)
	}
}

func TestDefineRefusesMismatchedConfigType(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "does not fit its Go type") {
			t.Fatalf("recover = %v", r)
		}
	}()
	sdk.Define(sdk.Definition[struct{}]{
		Schema: &sdk.Schema{Name: "x", Fields: []sdk.Field{{Name: "header", Type: sdk.String, Default: "h"}}},
		New:    func(sdk.Instance, struct{}) (sdk.Handler, error) { return nil, nil },
	})
}

// TestEventTypesFilter: a plugin that asks for consumer events gets those
// only, and no call for a batch without any.
func TestEventTypesFilter(t *testing.T) {
	var calls [][]sdk.Event
	h := newHarness(t, sdk.Define(sdk.Definition[struct{}]{
		Schema:     &sdk.Schema{Name: "consumers-only"},
		New:        func(sdk.Instance, struct{}) (sdk.Handler, error) { return nil, nil },
		Events:     func(evs []sdk.Event, _ bool) { calls = append(calls, evs) },
		EventTypes: []string{sdk.TypeConsumer},
	}))
	calls = nil
	h.apply(put("routes/r9", `{"id":"r9","paths":["/r9"],"service":{"id":"s1"}}`))
	h.apply(put("routes/r8", `{"id":"r8","paths":["/r8"],"service":{"id":"s1"}}`), put("consumers/c1", `{"id":"c1","username":"a"}`))
	if len(calls) != 1 || len(calls[0]) != 1 || calls[0][0].Type != sdk.TypeConsumer || calls[0][0].ID != "c1" {
		t.Fatalf("calls = %+v", calls)
	}
}
