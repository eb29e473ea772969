package entity

import (
	"encoding/json"
	"strings"
	"testing"
)

func obj(t *testing.T, s string) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

var keep = map[string]any{"id": "8c8a7b0e-0c1f-4b5e-9d43-0b6a3c6f0e11", "created_at": int64(1), "updated_at": int64(1)}

func TestServiceDefaults(t *testing.T) {
	e, errs := Normalize(Service, obj(t, `{"host":"a.internal"}`), nil, keep)
	if errs != nil {
		t.Fatal(errs)
	}
	want := map[string]any{
		"protocol": "http", "port": int64(80), "retries": int64(5), "connect_timeout": int64(60000),
		"write_timeout": int64(60000), "read_timeout": int64(60000), "enabled": true, "path": nil, "name": nil,
		"tags": nil, "tls_verify": nil, "client_certificate": nil, "ca_certificates": nil,
	}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("%s = %#v, want %#v", k, e[k], v)
		}
	}
	if len(e) != len(Service.Fields) {
		t.Errorf("entity has %d fields, want all %d", len(e), len(Service.Fields))
	}
}

func TestServiceURL(t *testing.T) {
	cases := []struct {
		url, protocol, host, path string
		port                      int64
	}{
		{"http://a.internal", "http", "a.internal", "", 80},
		{"https://a.internal/v1/x", "https", "a.internal", "/v1/x", 443},
		{"http://10.0.0.1:8080/", "http", "10.0.0.1", "/", 8080},
		{"grpcs://g.internal", "grpcs", "g.internal", "", 443},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			e, errs := Normalize(Service, map[string]any{"url": c.url}, nil, keep)
			if errs != nil {
				t.Fatal(errs)
			}
			var path any
			if c.path != "" {
				path = c.path
			}
			if e["protocol"] != c.protocol || e["host"] != c.host || e["port"] != c.port || e["path"] != path {
				t.Errorf("got %v %v %v %v", e["protocol"], e["host"], e["port"], e["path"])
			}
			if _, ok := e["url"]; ok {
				t.Error("url is write-only and must not be stored")
			}
		})
	}
	if _, errs := Normalize(Service, map[string]any{"url": "not a url"}, nil, keep); errs == nil || errs["url"] == nil {
		t.Errorf("bad url accepted: %v", errs)
	}
	e, _ := Normalize(Service, obj(t, `{"host":"a","protocol":"https"}`), nil, keep)
	if e["port"] != int64(443) {
		t.Errorf("https without port: port = %v, want 443", e["port"])
	}
}

func TestValidation(t *testing.T) {
	cases := []struct {
		name  string
		typ   *Type
		body  string
		field string
		msg   string
	}{
		{"required", Service, `{}`, "host", "required field missing"},
		{"unknown", Service, `{"host":"a","nope":1}`, "nope", "unknown field"},
		{"string type", Service, `{"host":1}`, "host", "expected a string"},
		{"integer type", Service, `{"host":"a","port":"80"}`, "port", "expected an integer"},
		{"fraction", Service, `{"host":"a","retries":1.5}`, "retries", "expected an integer"},
		{"range", Service, `{"host":"a","port":65536}`, "port", "value should be between 0 and 65535"},
		{"enum", Service, `{"host":"a","protocol":"ftp"}`, "protocol", "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp, ws, wss"},
		{"boolean", Service, `{"host":"a","enabled":"yes"}`, "enabled", "expected a boolean"},
		{"path", Service, `{"host":"a","path":"x"}`, "path", "should start with: /"},
		{"bad host", Service, `{"host":"a b"}`, "host", "invalid value: a b"},
		{"id readonly shape", Service, `{"host":"a","id":"nope"}`, "id", "cannot be changed"},
		{"route paths", Route, `{"paths":["x"]}`, "paths", "should start with: / (fixed path) or ~/ (regex path)"},
		{"route array", Route, `{"paths":"/x"}`, "paths", "expected an array"},
		{"route method", Route, `{"methods":["get"]}`, "methods", "invalid value: get"},
		{"route redirect code", Route, `{"paths":["/"],"https_redirect_status_code":200}`, "https_redirect_status_code", "value must be one of: 426, 301, 302, 307, 308"},
		{"route service", Route, `{"paths":["/"],"service":{"id":"x"}}`, "service", ""},
		{"route host header", Route, `{"headers":{"Host":["a"]}}`, "headers", "cannot contain 'host' header, which must be specified in the 'hosts' attribute"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errs := Normalize(c.typ, obj(t, c.body), nil, keep)
			got, ok := errs[c.field]
			if !ok {
				t.Fatalf("no violation on %s: %v", c.field, errs)
			}
			if s, isStr := got.(string); c.msg != "" && (!isStr || s != c.msg) {
				t.Errorf("%s: %v, want %q", c.field, got, c.msg)
			}
		})
	}
}

func TestRouteNeedsMatcher(t *testing.T) {
	_, errs := Normalize(Route, obj(t, `{"protocols":["https"]}`), nil, keep)
	want := "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"
	if l, _ := errs["@entity"].([]string); len(l) != 1 || l[0] != want {
		t.Fatalf("@entity = %v", errs["@entity"])
	}
	e, errs := Normalize(Route, obj(t, `{"paths":["/a"],"service":{"id":"8c8a7b0e-0c1f-4b5e-9d43-0b6a3c6f0e11"}}`), nil, keep)
	if errs != nil {
		t.Fatal(errs)
	}
	if e["strip_path"] != true || e["preserve_host"] != false || e["path_handling"] != "v0" || e["regex_priority"] != int64(0) ||
		e["https_redirect_status_code"] != int64(426) || e["request_buffering"] != true || e["response_buffering"] != true {
		t.Errorf("route defaults: %v", e)
	}
	if p := e["protocols"].([]any); len(p) != 2 || p[0] != "http" || p[1] != "https" {
		t.Errorf("protocols = %v", p)
	}
}

func TestPatchMergesAndKeeps(t *testing.T) {
	base, errs := Normalize(Service, obj(t, `{"host":"a","name":"s","retries":3}`), nil, keep)
	if errs != nil {
		t.Fatal(errs)
	}
	e, errs := Normalize(Service, obj(t, `{"port":8080}`), base, map[string]any{"updated_at": int64(9)})
	if errs != nil {
		t.Fatal(errs)
	}
	if e["port"] != int64(8080) || e["retries"] != int64(3) || e["name"] != "s" || e["created_at"] != int64(1) || e["updated_at"] != int64(9) {
		t.Errorf("patched = %v", e)
	}
	if base["port"] != int64(80) {
		t.Error("PATCH changed its base")
	}
	if _, errs := Normalize(Service, obj(t, `{"id":"0b6a3c6f-0c1f-4b5e-9d43-8c8a7b0e0e11"}`), base, nil); errs == nil {
		t.Error("PATCH changed the id")
	}
}

func TestErrorsMessage(t *testing.T) {
	one := Errors{"host": "required field missing"}
	if got := one.Message(); got != "schema violation (host: required field missing)" {
		t.Errorf("one = %q", got)
	}
	two := Errors{"port": "expected an integer", "host": "required field missing"}
	if got := two.Message(); got != "2 schema violations (host: required field missing; port: expected an integer)" {
		t.Errorf("two = %q", got)
	}
	entityCheck := Errors{"@entity": []string{"please submit only one certificate at a time"}}
	if got := entityCheck.Message(); got != "schema violation (please submit only one certificate at a time)" {
		t.Errorf("entity check = %q", got)
	}
	nested := Errors{"config": Errors{"second": "expected a number"}}
	if got := nested.Message(); got != "schema violation (config.second: expected a number)" {
		t.Errorf("nested = %q", got)
	}
}

// TestRedisPolicyWithoutRedis: a rate-limiting plugin with policy redis and
// "redis": null is a schema violation (config.redis.host missing), not a
// panic in the plugin check.
func TestRedisPolicyWithoutRedis(t *testing.T) {
	in := obj(t, `{"name":"rate-limiting","config":{"minute":1,"policy":"redis","redis":null}}`)
	_, errs := Normalize(Plugin, in, nil, map[string]any{"id": "11111111-2222-4333-8444-555555555555", "created_at": int64(1), "updated_at": int64(1)})
	cfg, _ := errs["config"].(Errors)
	redis, _ := cfg["redis"].(Errors)
	if redis["host"] != "required field missing" {
		t.Fatalf("errors = %v, want config.redis.host required", errs)
	}
}
