//go:build integration

package api_test

import (
	"fmt"
	"sort"
	"testing"
)

// TestTags: GET /tags and /tags/{tag} list (entity_name, entity_id, tag)
// of every type, ordered by tag, paginated by size and offset.
func TestTags(t *testing.T) {
	e := setup(t, false)
	mustCode := func(want int, method, path, body string) map[string]any {
		t.Helper()
		code, b := e.do(t, method, path, body)
		if code != want {
			t.Fatalf("%s %s = %d %v, want %d", method, path, code, b, want)
		}
		return b
	}
	svc := mustCode(201, "POST", "/services", `{"name":"s","host":"s.internal","tags":["blue","red"]}`)
	con := mustCode(201, "POST", "/consumers", `{"username":"u","tags":["red"]}`)
	mustCode(201, "POST", "/routes", `{"name":"r","paths":["/r"]}`)

	all := mustCode(200, "GET", "/tags", "")
	want := []string{
		"services " + svc["id"].(string) + " blue",
		"consumers " + con["id"].(string) + " red",
		"services " + svc["id"].(string) + " red",
	}
	if got := tagRows(all); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("GET /tags = %v, want %v", got, want)
	}
	if all["next"] != nil {
		t.Fatalf("next = %v, want null", all["next"])
	}
	red := mustCode(200, "GET", "/tags/red", "")
	if got := tagRows(red); fmt.Sprint(got) != fmt.Sprint(want[1:]) {
		t.Fatalf("GET /tags/red = %v, want %v", got, want[1:])
	}

	var pages []string
	path := "/tags?size=1"
	for path != "" {
		p := mustCode(200, "GET", path, "")
		pages = append(pages, tagRows(p)...)
		path, _ = p["next"].(string)
		if len(pages) > 10 {
			t.Fatal("pagination does not end")
		}
	}
	if fmt.Sprint(pages) != fmt.Sprint(want) {
		t.Fatalf("pages of one = %v, want %v", pages, want)
	}
	if none := mustCode(200, "GET", "/tags/green", ""); len(none["data"].([]any)) != 0 {
		t.Fatalf("GET /tags/green = %v, want no data", none)
	}
	mustCode(400, "GET", "/tags?offset=bogus", "")
	mustCode(400, "GET", "/tags?size=0", "")
}

func tagRows(page map[string]any) []string {
	var out []string
	for _, d := range page["data"].([]any) {
		m := d.(map[string]any)
		out = append(out, fmt.Sprint(m["entity_name"], " ", m["entity_id"], " ", m["tag"]))
	}
	return out
}

// TestSchemas: GET /schemas/{entity} in Kong's shape from the descriptors,
// POST /schemas/{entity}/validate checks a body without writing it.
func TestSchemas(t *testing.T) {
	e := setup(t, false)
	code, s := e.do(t, "GET", "/schemas/services", "")
	if code != 200 {
		t.Fatalf("GET /schemas/services = %d %v", code, s)
	}
	fields := map[string]map[string]any{}
	for _, f := range s["fields"].([]any) {
		for k, v := range f.(map[string]any) {
			fields[k] = v.(map[string]any)
		}
	}
	if h := fields["host"]; h["type"] != "string" || h["required"] != true {
		t.Errorf("host = %v", h)
	}
	if p := fields["port"]; p["default"] != float64(80) || fmt.Sprint(p["between"]) != "[0 65535]" {
		t.Errorf("port = %v", p)
	}
	if p := fields["protocol"]; len(p["one_of"].([]any)) == 0 {
		t.Errorf("protocol = %v", p)
	}
	if id := fields["id"]; id["uuid"] != true || id["auto"] != true {
		t.Errorf("id = %v", id)
	}
	code, s = e.do(t, "GET", "/schemas/routes", "")
	if code != 200 {
		t.Fatalf("GET /schemas/routes = %d", code)
	}
	found := false
	for _, f := range s["fields"].([]any) {
		if svc, ok := f.(map[string]any)["service"].(map[string]any); ok {
			found = svc["type"] == "foreign" && svc["reference"] == "services"
		}
	}
	if !found {
		t.Errorf("routes.service is not a foreign reference to services: %v", s["fields"])
	}
	for _, name := range []string{"keyauth_credentials", "key-auths", "plugins", "certificates"} {
		if code, _ := e.do(t, "GET", "/schemas/"+name, ""); code != 200 {
			t.Errorf("GET /schemas/%s = %d", name, code)
		}
	}
	if code, b := e.do(t, "GET", "/schemas/nope", ""); code != 404 || b["message"] != "No entity named 'nope'" {
		t.Errorf("GET /schemas/nope = %d %v", code, b)
	}

	for _, c := range []struct {
		path, body string
		want       int
	}{
		{"/schemas/services/validate", `{"host":"a.internal"}`, 200},
		{"/schemas/services/validate", `{"url":"http://a.internal:8080/x"}`, 200},
		{"/schemas/services/validate", `{"port":"x"}`, 400},
		{"/schemas/routes/validate", `{"paths":["/a"]}`, 200},
		{"/schemas/routes/validate", `{"protocols":["http"]}`, 400},
		{"/schemas/plugins/validate", `{"name":"rate-limiting","config":{"minute":5}}`, 200},
		{"/schemas/plugins/validate", `{"name":"rate-limiting","config":{"minute":"x"}}`, 400},
		{"/schemas/nope/validate", `{}`, 404},
	} {
		code, b := e.do(t, "POST", c.path, c.body)
		if code != c.want {
			t.Errorf("POST %s %s = %d %v, want %d", c.path, c.body, code, b, c.want)
		}
		if code == 200 && b["message"] != "schema validation successful" {
			t.Errorf("POST %s = %v", c.path, b)
		}
	}
	if n := e.count(t, "SELECT (SELECT count(*) FROM services) + (SELECT count(*) FROM routes) + (SELECT count(*) FROM plugins) + (SELECT count(*) FROM outbox)"); n != 0 {
		t.Fatalf("validate wrote %d rows", n)
	}
}

// TestSingleParentSubresources: /routes/{route}/service and the other
// /<child>/{id}/<foreign field> URLs as Kong has them: GET, PATCH and PUT
// the referenced entity; 404 when the child is missing or references
// nothing (PUT then creates the entity and references it); DELETE is 405.
func TestSingleParentSubresources(t *testing.T) {
	e := setup(t, false)
	mustCode := func(want int, method, path, body string) map[string]any {
		t.Helper()
		code, b := e.do(t, method, path, body)
		if code != want {
			t.Fatalf("%s %s %s = %d %v, want %d", method, path, body, code, b, want)
		}
		return b
	}
	svc := mustCode(201, "POST", "/services", `{"name":"s","host":"s.internal"}`)
	mustCode(201, "POST", "/services/s/routes", `{"name":"r","paths":["/r"]}`)
	mustCode(201, "POST", "/routes", `{"name":"lone","paths":["/l"]}`)

	if got := mustCode(200, "GET", "/routes/r/service", ""); got["id"] != svc["id"] {
		t.Fatalf("GET /routes/r/service = %v, want service %v", got, svc["id"])
	}
	if got := mustCode(200, "PATCH", "/routes/r/service", `{"retries":2}`); got["retries"] != float64(2) || got["id"] != svc["id"] {
		t.Fatalf("PATCH /routes/r/service = %v", got)
	}
	if got := mustCode(200, "PUT", "/routes/r/service", `{"host":"t.internal"}`); got["host"] != "t.internal" || got["id"] != svc["id"] || got["retries"] != float64(5) {
		t.Fatalf("PUT /routes/r/service = %v", got)
	}
	mustCode(405, "DELETE", "/routes/r/service", "")
	mustCode(404, "GET", "/routes/lone/service", "")
	mustCode(404, "PATCH", "/routes/lone/service", `{"retries":1}`)
	mustCode(404, "DELETE", "/routes/lone/service", "")
	mustCode(404, "GET", "/routes/none/service", "")
	mustCode(404, "PUT", "/routes/none/service", `{"host":"x.internal"}`)

	// PUT on a route without a service creates one and references it, in
	// one transaction.
	last := e.count(t, "SELECT coalesce(max(id), 0) FROM outbox")
	created := mustCode(200, "PUT", "/routes/lone/service", `{"name":"made","host":"m.internal"}`)
	route := mustCode(200, "GET", "/routes/lone", "")
	if ref, _ := route["service"].(map[string]any); ref["id"] != created["id"] {
		t.Fatalf("route's service = %v, want %v", route["service"], created["id"])
	}
	q := fmt.Sprintf("SELECT count(*) * 10 + count(DISTINCT batch) FROM outbox WHERE id > %d", last)
	if n := e.count(t, q); n != 21 {
		t.Fatalf("the associating PUT wrote %d outbox rows in %d batches, want 2 rows in one batch", n/10, n%10)
	}
	// An invalid body is a 400 that writes nothing.
	before := e.count(t, "SELECT count(*) FROM outbox")
	mustCode(400, "PUT", "/routes/r/service", `{"port":"x"}`)
	mustCode(400, "PATCH", "/routes/r/service", `{"port":"x"}`)
	if after := e.count(t, "SELECT count(*) FROM outbox"); after != before {
		t.Fatalf("rejected writes added %d outbox rows", after-before)
	}

	con := mustCode(201, "POST", "/consumers", `{"username":"u"}`)
	ka := mustCode(201, "POST", "/consumers/u/key-auth", `{"key":"k1"}`)
	if got := mustCode(200, "GET", "/key-auths/k1/consumer", ""); got["id"] != con["id"] {
		t.Fatalf("GET /key-auths/k1/consumer = %v", got)
	}
	if got := mustCode(200, "GET", "/key-auths/"+ka["id"].(string)+"/consumer", ""); got["id"] != con["id"] {
		t.Fatalf("GET /key-auths/{id}/consumer = %v", got)
	}
	pl := mustCode(201, "POST", "/routes/r/plugins", `{"name":"key-auth"}`)
	pid := pl["id"].(string)
	mustCode(200, "GET", "/plugins/"+pid+"/route", "")
	mustCode(404, "GET", "/plugins/"+pid+"/service", "")
	mustCode(404, "GET", "/plugins/"+pid+"/consumer", "")
	up := mustCode(201, "POST", "/upstreams", `{"name":"up.internal"}`)
	tg := mustCode(201, "POST", "/upstreams/up.internal/targets", `{"target":"10.0.0.1:80"}`)
	if got := mustCode(200, "GET", "/targets/"+tg["id"].(string)+"/upstream", ""); got["id"] != up["id"] {
		t.Fatalf("GET /targets/{id}/upstream = %v", got)
	}
	cert, key := selfSigned(t, false)
	c := mustCode(201, "POST", "/certificates", js(map[string]any{"cert": cert, "key": key}))
	mustCode(201, "POST", "/snis", js(map[string]any{"name": "a.example.com", "certificate": map[string]any{"id": c["id"]}}))
	if got := mustCode(200, "GET", "/snis/a.example.com/certificate", ""); got["id"] != c["id"] {
		t.Fatalf("GET /snis/{sni}/certificate = %v", got)
	}
	mustCode(404, "GET", "/services/s/client_certificate", "")
}

// TestConsumersByCustomID: GET /consumers?custom_id= lists the consumer
// with that custom_id, or none, as Kong.
func TestConsumersByCustomID(t *testing.T) {
	e := setup(t, false)
	if code, b := e.do(t, "POST", "/consumers", `{"username":"u","custom_id":"c-1"}`); code != 201 {
		t.Fatalf("POST /consumers = %d %v", code, b)
	}
	if code, b := e.do(t, "POST", "/consumers", `{"username":"v","custom_id":"c-2"}`); code != 201 {
		t.Fatalf("POST /consumers = %d %v", code, b)
	}
	for _, c := range []struct {
		query string
		code  int
		want  string
	}{
		{"custom_id=c-1", 200, "[u]"},
		{"custom_id=c-2", 200, "[v]"},
		{"custom_id=none", 200, "[]"},
		{"", 200, "[u v]"},
		{"custom_id=", 400, ""},
		{"custom_id=a&custom_id=b", 400, ""},
	} {
		code, b := e.do(t, "GET", "/consumers?"+c.query, "")
		if code != c.code {
			t.Errorf("GET /consumers?%s = %d %v, want %d", c.query, code, b, c.code)
			continue
		}
		if c.code != 200 {
			continue
		}
		var got []string
		for _, d := range b["data"].([]any) {
			got = append(got, d.(map[string]any)["username"].(string))
		}
		sort.Strings(got) // a list is in id order
		if fmt.Sprint(got) != c.want && !(c.want == "[]" && len(got) == 0) {
			t.Errorf("GET /consumers?%s = %v, want %s", c.query, got, c.want)
		}
	}
}
