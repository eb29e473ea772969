//go:build integration

package api_test

import (
	"testing"
)

// TestPageParams: a repeated or empty size or offset is a 400 in Kong's
// shape (code 9 invalid size, code 7 invalid offset), as a bad one is.
func TestPageParams(t *testing.T) {
	e := setup(t, false)
	for _, c := range []struct {
		query string
		code  float64
	}{
		{"size=", 9},
		{"size", 9},
		{"size=1&size=2", 9},
		{"size=x", 9},
		{"size=0", 9},
		{"offset=", 7},
		{"offset", 7},
		{"offset=a&offset=b", 7},
	} {
		t.Run(c.query, func(t *testing.T) {
			code, body := e.do(t, "GET", "/services?"+c.query, "")
			if code != 400 || body["code"] != c.code {
				t.Fatalf("GET /services?%s = %d %v, want 400 code %v", c.query, code, body, c.code)
			}
		})
	}
	if code, _ := e.do(t, "GET", "/services?size=2", ""); code != 200 {
		t.Fatalf("size=2 = %d", code)
	}
}

// TestNULAnywhere: a NUL character in a query parameter (name or value),
// in the path, in a nested URL's parent or in a declarative file (JSON or
// YAML, value or key) is a 400 code 2 or 14, never a 500.
func TestNULAnywhere(t *testing.T) {
	e := setup(t, false)
	cases := []struct{ name, method, path, body string }{
		{"size", "GET", "/services?size=%00", ""},
		{"offset", "GET", "/services?offset=%00", ""},
		{"other parameter", "GET", "/services?x=%00", ""},
		{"parameter name", "GET", "/services?x%00=1", ""},
		{"parent in URL", "GET", "/services/a%00b/routes", ""},
		{"path", "GET", "/servi%00ces", ""},
		{"delete by name", "DELETE", "/services/a%00b", ""},
		{"config value", "POST", "/config", `{"_format_version":"3.0","services":[{"name":"s","host":"h\u0000"}]}`},
		{"config key", "POST", "/config", `{"_format_version":"3.0","services":[{"name":"s","host":"h","x\u0000":1}]}`},
		{"config top key", "POST", "/config", `{"_format_version":"3.0","x\u0000":[]}`},
		{"config yaml", "POST", "/config", "_format_version: \"3.0\"\nservices:\n  - {name: s, host: \"h\\0\"}\n"},
		{"config comment", "POST", "/config", `{"_format_version":"3.0","_comment":"\u0000","services":[{"name":"s","host":"h","_comment":"\u0000"}]}`},
		{"config reference", "POST", "/config", `{"_format_version":"3.0","routes":[{"paths":["/"],"service":"s\u0000"}]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := e.do(t, c.method, c.path, c.body)
			if c.name == "config comment" {
				// Kong ignores comments; nothing of them is stored.
				if code != 201 {
					t.Fatalf("= %d %v", code, body)
				}
				return
			}
			if code != 400 || (body["code"] != float64(2) && body["code"] != float64(14)) {
				t.Fatalf("%s %q = %d %v, want 400 code 2 or 14", c.method, c.path, code, body)
			}
		})
	}
}
