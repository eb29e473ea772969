package entity

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestUpstreamHealthchecks: a partial healthchecks record is completed
// with Kong's defaults, and wrong fields are refused in Kong's shape.
func TestUpstreamHealthchecks(t *testing.T) {
	e, errs := Normalize(Upstream, obj(t, `{"name":"pool.internal","healthchecks":{"active":{"http_path":"/health","healthy":{"interval":0.5,"successes":2}},"passive":{"unhealthy":{"http_failures":3}}}}`), nil, keep)
	if errs != nil {
		t.Fatal(errs)
	}
	got, _ := json.Marshal(e["healthchecks"])
	for _, want := range []string{`"http_path":"/health"`, `"interval":0.5`, `"successes":2`, `"http_failures":3`, `"timeout":1`, `"concurrency":10`,
		`"http_statuses":[429,404,500,501,502,503,504,505]`, `"http_statuses":[429,500,503]`, `"threshold":0`, `"https_verify_certificate":true`} {
		if !strings.Contains(string(got), want) {
			t.Errorf("healthchecks %s: no %s", got, want)
		}
	}
	def, errs := Normalize(Upstream, obj(t, `{"name":"pool.internal"}`), nil, keep)
	if errs != nil {
		t.Fatal(errs)
	}
	d1, _ := json.Marshal(def["healthchecks"])
	d2, _ := json.Marshal(healthchecksDefault)
	var a, b any
	json.Unmarshal(d1, &a)
	json.Unmarshal(d2, &b)
	if ja, _ := json.Marshal(a); string(ja) != func() string { jb, _ := json.Marshal(b); return string(jb) }() {
		t.Errorf("default healthchecks\n %s\nwant\n %s", d1, d2)
	}
	for _, c := range []struct{ in, want string }{
		{`{"active":{"healthy":{"interval":"soon"}}}`, "expected a number"},
		{`{"active":{"unhealthy":{"http_failures":300}}}`, "between 0 and 255"},
		{`{"active":{"type":"udp"}}`, "expected one of"},
		{`{"passive":{"unhealthy":{"http_statuses":[42]}}}`, "between 100 and 999"},
		{`{"active":{"bogus":1}}`, "unknown field"},
		{`{"threshold":101}`, "between 0 and 100"},
	} {
		_, errs := Normalize(Upstream, obj(t, `{"name":"pool.internal","healthchecks":`+c.in+`}`), nil, keep)
		if errs == nil || !strings.Contains(errs.Message(), c.want) {
			t.Errorf("%s: %v, want %q", c.in, errs, c.want)
		}
	}
}
