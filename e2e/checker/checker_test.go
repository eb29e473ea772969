package checker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/wire"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	svcA = "11111111-1111-1111-1111-111111111111"
	svcB = "22222222-2222-2222-2222-222222222222"
	con  = "33333333-3333-3333-3333-333333333333"
	cred = "44444444-4444-4444-4444-444444444444"
	plug = "55555555-5555-5555-5555-555555555555"
)

func js(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// op builds a recorded request that ran from second start to second end.
func op(method, path string, body map[string]any, out Outcome, start, end int, resp map[string]any) Op {
	o := Op{Method: method, Path: path, Fields: body, Outcome: out,
		Start: t0.Add(time.Duration(start) * time.Second), End: t0.Add(time.Duration(end) * time.Second)}
	o.Kind, o.Key, o.Parent = Describe(method, path, body)
	if o.Kind == Import {
		o.Declared, o.Fields = Declared(body), nil
	}
	if resp != nil {
		o.Response = js(resp)
	}
	if out == OK {
		o.Status = 200
	}
	return o
}

func svc(id, name, host string) map[string]any {
	return map[string]any{"id": id, "name": name, "host": host, "port": 80, "updated_at": 1}
}

func view(node string, truth map[string][]byte) wire.ContentView {
	d, err := Digests(truth)
	if err != nil {
		panic(err)
	}
	return wire.ContentView{NodeID: node, Version: 7, Hash: "h", Entities: d}
}

func props(r *Report) []string {
	var out []string
	for _, v := range r.Violations {
		out = append(out, v.Property+" "+v.Key)
	}
	return out
}

func wantProps(t *testing.T, r *Report, want ...string) {
	t.Helper()
	got := props(r)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("violations:\n%s\nwant:\n%s\nreport:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"), r)
	}
}

func TestCheckCleanHistory(t *testing.T) {
	created := svc(svcA, "a", "a.internal")
	updated := svc(svcA, "a", "a2.internal")
	ops := []Op{
		op("POST", "/services", map[string]any{"id": svcA, "name": "a", "host": "a.internal"}, OK, 0, 1, created),
		op("PATCH", "/services/"+svcA, map[string]any{"host": "a2.internal"}, OK, 2, 3, updated),
		op("POST", "/services", map[string]any{"id": svcB, "name": "b", "host": "b"}, OK, 2, 3, svc(svcB, "b", "b")),
		op("DELETE", "/services/"+svcB, nil, OK, 4, 5, nil),
	}
	truth := map[string][]byte{"services/" + svcA: js(updated)}
	r := Check(Input{Ops: ops, Truth: truth, Views: []wire.ContentView{view("dp1", truth), view("dp2", truth)}})
	wantProps(t, r)
	if !strings.Contains(r.String(), "no violations") || r.Ops[OK] != 4 {
		t.Fatal(r)
	}
}

func TestCheckLostWrites(t *testing.T) {
	created := svc(svcA, "a", "a.internal")
	updated := svc(svcA, "a", "a2.internal")
	ops := []Op{
		op("POST", "/services", map[string]any{"id": svcA, "name": "a", "host": "a.internal"}, OK, 0, 1, created),
		op("PATCH", "/services/"+svcA, map[string]any{"host": "a2.internal"}, OK, 2, 3, updated),
		op("POST", "/services", map[string]any{"id": svcB, "name": "b", "host": "b"}, OK, 2, 3, svc(svcB, "b", "b")),
	}
	// The update is lost on A, the create of B is lost.
	truth := map[string][]byte{"services/" + svcA: js(created)}
	r := Check(Input{Ops: ops, Truth: truth})
	wantProps(t, r, "lost write services/"+svcA, "lost write services/"+svcB)
	if !strings.Contains(r.String(), "PATCH /services/"+svcA) {
		t.Fatalf("report does not name the lost request:\n%s", r)
	}
}

func TestCheckConcurrentAndUnknownWrites(t *testing.T) {
	first := svc(svcA, "a", "x")
	second := svc(svcA, "a", "y")
	ops := []Op{
		// Two acknowledged updates that overlap: either may be last.
		op("PUT", "/services/"+svcA, map[string]any{"name": "a", "host": "x"}, OK, 0, 3, first),
		op("PUT", "/services/"+svcA, map[string]any{"name": "a", "host": "y"}, OK, 1, 2, second),
		// A create with no answer: present or absent are both fine.
		op("POST", "/services", map[string]any{"id": svcB, "name": "b", "host": "b"}, Unknown, 0, 5, nil),
	}
	for _, truth := range []map[string][]byte{
		{"services/" + svcA: js(first)},
		{"services/" + svcA: js(second), "services/" + svcB: js(svc(svcB, "b", "b"))},
	} {
		wantProps(t, Check(Input{Ops: ops, Truth: truth}))
	}
	// An unknown write may land after a later acknowledged one (a paused
	// admin-api resumed): a late unknown update is a possible outcome.
	ops = []Op{
		op("POST", "/services", map[string]any{"id": svcA, "name": "a", "host": "x"}, OK, 0, 1, first),
		op("PATCH", "/services/"+svcA, map[string]any{"host": "late"}, Unknown, 2, 3, nil),
		op("PATCH", "/services/"+svcA, map[string]any{"host": "y"}, OK, 4, 5, second),
	}
	wantProps(t, Check(Input{Ops: ops, Truth: map[string][]byte{"services/" + svcA: js(svc(svcA, "a", "late"))}}))
	// But not a value nobody wrote.
	wantProps(t, Check(Input{Ops: ops, Truth: map[string][]byte{"services/" + svcA: js(svc(svcA, "a", "other"))}}),
		"lost write services/"+svcA)
}

func TestCheckAbortedReadAndUnwritten(t *testing.T) {
	ops := []Op{
		op("POST", "/services", map[string]any{"id": svcA, "name": "a", "host": "a"}, Failed, 0, 1, nil),
	}
	truth := map[string][]byte{
		"services/" + svcA: js(svc(svcA, "a", "a")),
		"services/" + svcB: js(svc(svcB, "b", "b")),
		"consumers/" + con: js(map[string]any{"id": con, "username": "old"}),
	}
	r := Check(Input{Ops: ops, Truth: truth, Baseline: map[string][]byte{"consumers/" + con: truth["consumers/"+con]}})
	wantProps(t, r, "aborted read services/"+svcA, "unwritten entity services/"+svcB)
}

func TestCheckFailedUpdateVisible(t *testing.T) {
	created := svc(svcA, "a", "a")
	ops := []Op{
		op("POST", "/services", map[string]any{"id": svcA, "name": "a", "host": "a"}, OK, 0, 1, created),
		op("PATCH", "/services/"+svcA, map[string]any{"host": "failed"}, Failed, 2, 3, nil),
	}
	r := Check(Input{Ops: ops, Truth: map[string][]byte{"services/" + svcA: js(svc(svcA, "a", "failed"))}})
	wantProps(t, r, "aborted read services/"+svcA)
}

func TestCheckCascadingDelete(t *testing.T) {
	consumer := map[string]any{"id": con, "username": "u"}
	key := map[string]any{"id": cred, "key": "k", "consumer": map[string]any{"id": con}}
	plugin := map[string]any{"id": plug, "name": "key-auth", "consumer": map[string]any{"id": con}}
	ops := []Op{
		op("POST", "/consumers", map[string]any{"id": con, "username": "u"}, OK, 0, 1, consumer),
		// The nested path names the parent; the response says it too.
		op("POST", "/consumers/"+con+"/key-auth", map[string]any{"id": cred, "key": "k"}, OK, 2, 3, key),
		op("POST", "/plugins", map[string]any{"id": plug, "name": "key-auth", "consumer": map[string]any{"id": con}}, Unknown, 2, 3, nil),
		op("DELETE", "/consumers/"+con, nil, OK, 4, 5, nil),
	}
	wantProps(t, Check(Input{Ops: ops, Truth: map[string][]byte{}}))
	// A credential that survived its consumer's delete is a lost delete.
	r := Check(Input{Ops: ops, Truth: map[string][]byte{"keyauth_credentials/" + cred: js(key)}})
	wantProps(t, r, "lost write keyauth_credentials/"+cred)
	// So is a plugin of the consumer (here the unknown create had been
	// acknowledged).
	ops[2].Outcome, ops[2].Response = OK, js(plugin)
	r = Check(Input{Ops: ops, Truth: map[string][]byte{"plugins/" + plug: js(plugin)}})
	wantProps(t, r, "lost write plugins/"+plug)
}

func TestCheckImport(t *testing.T) {
	doc := map[string]any{"_format_version": "3.0",
		"services": []any{map[string]any{"id": svcB, "name": "b", "host": "imported"}}}
	ops := []Op{
		op("POST", "/services", map[string]any{"id": svcA, "name": "a", "host": "a"}, OK, 0, 1, svc(svcA, "a", "a")),
		op("POST", "/config", doc, OK, 2, 3, nil),
	}
	good := map[string][]byte{"services/" + svcB: js(map[string]any{"id": svcB, "name": "b", "host": "imported", "port": 80})}
	wantProps(t, Check(Input{Ops: ops, Truth: good}))
	// The import should have deleted A and written B's declared values.
	bad := map[string][]byte{
		"services/" + svcA: js(svc(svcA, "a", "a")),
		"services/" + svcB: js(map[string]any{"id": svcB, "name": "b", "host": "other"}),
	}
	wantProps(t, Check(Input{Ops: ops, Truth: bad}), "lost write services/"+svcA, "lost write services/"+svcB)
	// A failed import changes nothing.
	ops[1].Outcome = Failed
	wantProps(t, Check(Input{Ops: ops, Truth: good}), "lost write services/"+svcA, "aborted read services/"+svcB)
}

func TestCheckDataPlanes(t *testing.T) {
	a, b := svc(svcA, "a", "a"), svc(svcB, "b", "b")
	ops := []Op{
		op("POST", "/services", map[string]any{"id": svcA}, OK, 0, 1, a),
		op("POST", "/services", map[string]any{"id": svcB}, OK, 0, 1, b),
	}
	truth := map[string][]byte{"services/" + svcA: js(a), "services/" + svcB: js(b)}
	good := view("dp1", truth)
	missing := view("dp2", map[string][]byte{"services/" + svcA: js(a)})
	differs := view("dp3", map[string][]byte{"services/" + svcA: js(a), "services/" + svcB: js(svc(svcB, "b", "old"))})
	extra := view("dp4", map[string][]byte{"services/" + svcA: js(a), "services/" + svcB: js(b), "routes/" + plug: []byte(`{}`)})
	extra.Hash = "other"
	r := Check(Input{Ops: ops, Truth: truth, Views: []wire.ContentView{good, missing, differs, extra},
		Regressions: []string{"dp1: version 3 after 4"}, Quarantined: map[string]int64{"p.cp.changes.dlq": 0, "p.dp.deltas.dlq": 2}})
	wantProps(t, r,
		"data plane differs services/"+svcB, "data plane differs services/"+svcB, "data plane differs routes/"+plug,
		"hash differs ", "version decreased ", "quarantined ")
	for _, s := range []string{"missing on dp2", "different on dp3", "extra on dp4", "2 records on p.dp.deltas.dlq"} {
		if !strings.Contains(r.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, r)
		}
	}
	if d := Diff(truth, []wire.ContentView{good, view("dp2", truth)}); len(d) != 0 {
		t.Fatal(d)
	}
}

func TestClassify(t *testing.T) {
	dial := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	read := &net.OpError{Op: "read", Err: errors.New("connection reset by peer")}
	for _, c := range []struct {
		status int
		body   string
		err    error
		want   Outcome
	}{
		{201, "{}", nil, OK},
		{204, "", nil, OK},
		{400, "{}", nil, Failed},
		{404, "{}", nil, Failed},
		{409, "{}", nil, Failed},
		{503, `{"message":"database unavailable; nothing was written"}`, nil, Failed},
		{503, `{"message":"busy"}`, nil, Unknown},
		{500, `{"message":"An unexpected error occurred"}`, nil, Unknown},
		{0, "", dial, Failed},
		{0, "", read, Unknown},
		{0, "", context.DeadlineExceeded, Unknown},
	} {
		if got := Classify(c.status, []byte(c.body), c.err); got != c.want {
			t.Errorf("Classify(%d, %s, %v) = %v, want %v", c.status, c.body, c.err, got, c.want)
		}
	}
}

func TestDescribe(t *testing.T) {
	for _, c := range []struct {
		method, path string
		body         map[string]any
		kind         Kind
		key, parent  string
	}{
		{"POST", "/services", map[string]any{"id": svcA}, Upsert, "services/" + svcA, ""},
		{"PATCH", "/routes/" + svcA, nil, Upsert, "routes/" + svcA, ""},
		{"PUT", "/services/" + svcB + "/routes/" + svcA, nil, Upsert, "routes/" + svcA, "services/" + svcB},
		{"DELETE", "/consumers/" + con, nil, Delete, "consumers/" + con, ""},
		{"POST", "/consumers/" + con + "/key-auth", map[string]any{"id": cred}, Upsert, "keyauth_credentials/" + cred, "consumers/" + con},
		{"DELETE", "/key-auths/" + cred, nil, Delete, "keyauth_credentials/" + cred, ""},
		{"POST", "/config", nil, Import, "", ""},
		{"GET", "/services", nil, Read, "", ""},
	} {
		k, key, parent := Describe(c.method, c.path, c.body)
		if k != c.kind || key != c.key || parent != c.parent {
			t.Errorf("Describe(%s %s) = %v %q %q, want %v %q %q", c.method, c.path, k, key, parent, c.kind, c.key, c.parent)
		}
	}
}

func TestSamplerRecordsDecrease(t *testing.T) {
	s := &Sampler{last: map[string]uint64{}}
	for _, v := range []uint64{1, 2, 2, 5, 4, 6} {
		s.Observe("dp1", v)
	}
	s.Observe("dp2", 1)
	if reg := s.Regressions(); len(reg) != 1 || !strings.Contains(reg[0], "dp1: version 4 after 5") || s.Observed() != 7 {
		t.Fatalf("regressions %v, observed %d", reg, s.Observed())
	}
}

func TestClientRecordsAndConverge(t *testing.T) {
	a := svc(svcA, "a", "a")
	var served []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/services":
			w.WriteHeader(201)
			w.Write(js(a))
		case "/status/config":
			w.Write(served)
		case "/status":
			w.Write([]byte(`{"version":3}`))
		default:
			w.WriteHeader(503)
			w.Write([]byte(`{"message":"database unavailable; nothing was written"}`))
		}
	}))
	defer srv.Close()
	h := &History{}
	c := &Client{Base: srv.URL, History: h}
	if o := c.Do(t.Context(), "POST", "/services", map[string]any{"id": svcA, "name": "a"}); o.Outcome != OK || o.Key != "services/"+svcA {
		t.Fatal(o)
	}
	c.Do(t.Context(), "PATCH", "/services/"+svcB, map[string]any{"host": "b"})
	c.Do(t.Context(), "GET", "/services", nil)
	if n := h.Counts(); n[OK] != 1 || n[Failed] != 1 || len(h.Ops()) != 2 {
		t.Fatalf("counts %v, %d ops", n, len(h.Ops()))
	}
	truth := map[string][]byte{"services/" + svcA: js(a)}
	served = js(view("dp1", truth))
	took, err := Converge(t.Context(), 5*time.Second, func(context.Context) (map[string][]byte, error) { return truth, nil }, []string{srv.URL})
	if err != nil || took > 5*time.Second {
		t.Fatal(took, err)
	}
	served = js(view("dp1", nil))
	if _, err := Converge(t.Context(), 300*time.Millisecond, func(context.Context) (map[string][]byte, error) { return truth, nil }, []string{srv.URL}); err == nil || !strings.Contains(err.Error(), "missing on dp1") {
		t.Fatalf("converge on a data plane that lacks an entity: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	s := Sample(ctx, 10*time.Millisecond, srv.URL)
	for s.Observed() < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	s.Wait()
	if len(s.Regressions()) != 0 {
		t.Fatal(s.Regressions())
	}
	r := Check(Input{Ops: h.Ops(), Truth: truth})
	wantProps(t, r)
}

// An unanswered write's nested object is compared field by field: admin-api
// fills a plugin's config with defaults, so the stored config holds more
// than the request sent.
func TestCheckUnknownWriteWithNestedDefaults(t *testing.T) {
	ops := []Op{
		op("POST", "/services", map[string]any{"id": svcA, "name": "a", "host": "x"}, OK, 0, 1, svc(svcA, "a", "x")),
		op("POST", "/services/"+svcA+"/plugins", map[string]any{"id": plug, "name": "rate-limiting", "config": map[string]any{"minute": 9}}, Unknown, 2, 3, nil),
	}
	stored := map[string]any{"id": plug, "name": "rate-limiting", "service": map[string]any{"id": svcA}, "route": nil,
		"config": map[string]any{"minute": 9, "hour": nil, "policy": "local"}}
	truth := map[string][]byte{"services/" + svcA: js(svc(svcA, "a", "x")), "plugins/" + plug: js(stored)}
	wantProps(t, Check(Input{Ops: ops, Truth: truth}))
	// A nested value nobody wrote is still found.
	stored["config"] = map[string]any{"minute": 10, "hour": nil, "policy": "local"}
	truth["plugins/"+plug] = js(stored)
	wantProps(t, Check(Input{Ops: ops, Truth: truth}), "unexplained state plugins/"+plug)
}
