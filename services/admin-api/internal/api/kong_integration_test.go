//go:build integration

package api_test

import (
	"bufio"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
)

// TestNULInHeader: Go's HTTP server answers 400 to a NUL in a header
// value before any handler (clients refuse to send one, so the request is
// written by hand); rejectNUL covers what reaches the handlers.
func TestNULInHeader(t *testing.T) {
	e := setup(t, false)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /services HTTP/1.1\r\nHost: x\r\nIdempotency-Key: a\x00b\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 400 ") {
		t.Fatalf("status line %q (%v), want 400", status, err)
	}
}

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

// names lists the strings of a JSON array.
func names(v any) []string {
	var out []string
	arr, _ := v.([]any)
	for _, x := range arr {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestCertificateSNIs: as Kong, a certificate's "snis" list creates its
// SNIs with it (one transaction), reads back sorted on every certificate
// read, replaces them on PUT and PATCH (kept when absent), and DELETE
// deletes them with the certificate; a name that another certificate has
// or a repeated name is a 400 that writes nothing.
func TestCertificateSNIs(t *testing.T) {
	e := setup(t, false)
	cert, key := selfSigned(t, false)
	code, c := e.do(t, "POST", "/certificates", js(map[string]any{"cert": cert, "key": key, "snis": []string{"b.example.com", "a.example.com"}}))
	if code != 201 || !slices.Equal(names(c["snis"]), []string{"a.example.com", "b.example.com"}) {
		t.Fatalf("POST /certificates with snis = %d %v", code, c)
	}
	id := c["id"].(string)
	if n := e.count(t, "SELECT count(DISTINCT tx) FROM outbox"); n != 1 {
		t.Errorf("certificate and SNIs in %d transactions, want 1", n)
	}
	if code, s := e.do(t, "GET", "/snis/a.example.com", ""); code != 200 || s["certificate"].(map[string]any)["id"] != id {
		t.Fatalf("GET /snis/a.example.com = %d %v", code, s)
	}
	if code, g := e.do(t, "GET", "/certificates/"+id, ""); code != 200 || !slices.Equal(names(g["snis"]), []string{"a.example.com", "b.example.com"}) {
		t.Errorf("GET /certificates/{id} = %d %v", code, g)
	}
	code, l := e.do(t, "GET", "/certificates", "")
	if data, _ := l["data"].([]any); code != 200 || len(data) != 1 || !slices.Equal(names(data[0].(map[string]any)["snis"]), []string{"a.example.com", "b.example.com"}) {
		t.Errorf("GET /certificates = %d %v", code, l)
	}
	// Without snis, nothing.
	cert2, key2 := selfSigned(t, false)
	code, c2 := e.do(t, "POST", "/certificates", js(map[string]any{"cert": cert2, "key": key2}))
	if code != 201 || c2["snis"] == nil || len(names(c2["snis"])) != 0 {
		t.Fatalf("POST /certificates without snis = %d %v", code, c2)
	}
	before := e.count(t, "SELECT count(*) FROM outbox")
	for name, body := range map[string]string{
		"taken":     js(map[string]any{"cert": cert2, "key": key2, "snis": []string{"a.example.com"}}),
		"repeated":  js(map[string]any{"cert": cert2, "key": key2, "snis": []string{"x.example.com", "x.example.com"}}),
		"not names": js(map[string]any{"cert": cert2, "key": key2, "snis": []string{"a b"}}),
		"not list":  js(map[string]any{"cert": cert2, "key": key2, "snis": "a.example.com"}),
	} {
		t.Run(name, func(t *testing.T) {
			code, b := e.do(t, "POST", "/certificates", body)
			f, _ := b["fields"].(map[string]any)
			if code != 400 || b["code"] != float64(2) || f["snis"] == nil {
				t.Fatalf("= %d %v, want 400 code 2 on snis", code, b)
			}
		})
	}
	if code, b := e.do(t, "PATCH", "/certificates/"+c2["id"].(string), `{"snis":["b.example.com"]}`); code != 400 ||
		b["fields"].(map[string]any)["snis"] != "b.example.com already associated with existing certificate '"+id+"'" {
		t.Errorf("PATCH with a taken name = %d %v", code, b)
	}
	if n := e.count(t, "SELECT count(*) FROM outbox"); n != before {
		t.Errorf("refused writes wrote %d outbox rows", n-before)
	}
	// PATCH replaces the list; without snis it keeps it.
	code, p := e.do(t, "PATCH", "/certificates/"+id, `{"snis":["c.example.com","b.example.com"]}`)
	if code != 200 || !slices.Equal(names(p["snis"]), []string{"b.example.com", "c.example.com"}) {
		t.Fatalf("PATCH snis = %d %v", code, p)
	}
	if code, _ := e.do(t, "GET", "/snis/a.example.com", ""); code != 404 {
		t.Errorf("a.example.com after PATCH = %d, want 404", code)
	}
	code, p = e.do(t, "PATCH", "/certificates/"+id, `{"tags":["t"]}`)
	if code != 200 || !slices.Equal(names(p["snis"]), []string{"b.example.com", "c.example.com"}) {
		t.Errorf("PATCH without snis = %d %v", code, p)
	}
	code, p = e.do(t, "PUT", "/certificates/"+id, js(map[string]any{"cert": cert, "key": key, "snis": []string{}}))
	if code != 200 || p["snis"] == nil || len(names(p["snis"])) != 0 || e.count(t, "SELECT count(*) FROM snis") != 0 {
		t.Errorf("PUT with snis [] = %d %v", code, p)
	}
	// DELETE takes the SNIs with the certificate.
	e.do(t, "POST", "/certificates/"+id+"/snis", `{"name":"d.example.com"}`)
	if code, b := e.do(t, "DELETE", "/certificates/"+id, ""); code != 204 {
		t.Fatalf("DELETE certificate with an SNI = %d %v", code, b)
	}
	if n := e.count(t, "SELECT count(*) FROM snis"); n != 0 {
		t.Errorf("SNIs left after the certificate's delete: %d", n)
	}
	if n := e.count(t, "SELECT count(*) FROM outbox WHERE type = 'snis' AND op = 'delete'"); n != 4 {
		t.Errorf("SNI delete events = %d, want 4 (a by PATCH, b and c by PUT, d by DELETE)", n)
	}
	// Declarative: certificates[].snis, names or objects.
	cfg := js(map[string]any{"_format_version": "3.0", "certificates": []any{
		map[string]any{"cert": cert, "key": key, "snis": []any{"e.example.com", map[string]any{"name": "f.example.com"}}},
	}})
	if code, b := e.do(t, "POST", "/config", cfg); code != 201 || b["inserted"] != float64(3) {
		t.Fatalf("POST /config with certificates.snis = %d %v", code, b)
	}
	code, l = e.do(t, "GET", "/certificates", "")
	if data, _ := l["data"].([]any); code != 200 || len(data) != 1 || !slices.Equal(names(data[0].(map[string]any)["snis"]), []string{"e.example.com", "f.example.com"}) {
		t.Errorf("GET /certificates after import = %d %v", code, l)
	}
	if code, b := e.do(t, "POST", "/config", cfg); code != 201 || b["changes"] != float64(0) {
		t.Errorf("re-import = %d %v", code, b)
	}
	// The export writes the SNIs as snis entities (as Kong's db_export);
	// importing it changes nothing.
	code, exp := e.raw(t, "GET", "/config", "", "")
	if code != 200 || !strings.Contains(string(exp), `snis:\n    - certificate: `) {
		t.Fatalf("GET /config = %d %s", code, exp)
	}
	if code, b := e.do(t, "POST", "/config", string(exp)); code != 201 || b["changes"] != float64(0) {
		t.Errorf("import of the export = %d %v", code, b)
	}
}

// TestKeyAuthTTL: as Kong, a key-auth credential written with ttl expires
// ttl seconds after the write; reads show the seconds left; a PATCH
// without ttl keeps the expiry; an expired credential is not found and
// not listed.
func TestKeyAuthTTL(t *testing.T) {
	e := setup(t, false)
	e.do(t, "POST", "/consumers", `{"username":"u"}`)
	code, k := e.do(t, "POST", "/consumers/u/key-auth", `{"key":"long","ttl":1000}`)
	if code != 201 || k["ttl"] != float64(1000) {
		t.Fatalf("POST with ttl = %d %v", code, k)
	}
	code, g := e.do(t, "GET", "/key-auths/long", "")
	if ttl, _ := g["ttl"].(float64); code != 200 || ttl < 990 || ttl > 1000 {
		t.Fatalf("GET = %d %v, want ttl 990..1000", code, g)
	}
	code, p := e.do(t, "PATCH", "/key-auths/long", `{"tags":["x"]}`)
	if ttl, _ := p["ttl"].(float64); code != 200 || ttl < 990 || ttl > 1000 {
		t.Fatalf("PATCH without ttl = %d %v, want the expiry kept", code, p)
	}
	if code, k := e.do(t, "POST", "/consumers/u/key-auth", `{"key":"short","ttl":1}`); code != 201 {
		t.Fatalf("POST ttl 1 = %d %v", code, k)
	}
	testenv.Eventually(t, 10*time.Second, "the credential with ttl 1 expires", func() bool {
		code, _ := e.do(t, "GET", "/key-auths/short", "")
		return code == 404
	})
	code, l := e.do(t, "GET", "/consumers/u/key-auth", "")
	if data, _ := l["data"].([]any); code != 200 || len(data) != 1 || data[0].(map[string]any)["key"] != "long" {
		t.Errorf("list after expiry = %d %v, want only long", code, l)
	}
	if code, _ := e.do(t, "PATCH", "/key-auths/short", `{"tags":["y"]}`); code != 404 {
		t.Errorf("PATCH of an expired credential = %d, want 404", code)
	}
	// Its key is free again (Kong's ttl cleanup would have removed it).
	if code, b := e.do(t, "POST", "/consumers/u/key-auth", `{"key":"short"}`); code != 201 || b["ttl"] != nil {
		t.Errorf("POST with an expired credential's key = %d %v", code, b)
	}
	if code, b := e.do(t, "POST", "/consumers/u/key-auth", `{"key":"long"}`); code != 409 {
		t.Errorf("POST with a live credential's key = %d %v, want 409", code, b)
	}
}

// TestKongValidationAnswers: Kong's name, path and CA certificate rules
// answer 400 code 2 with the field's message, over HTTP and in a
// declarative file (code 14).
func TestKongValidationAnswers(t *testing.T) {
	e := setup(t, false)
	for _, c := range []struct{ name, path, body, field, msg string }{
		{"service name", "/services", `{"name":"a b","host":"h"}`, "name", "invalid value 'a b': the only accepted ascii characters are alphanumerics or ., -, _, and ~"},
		{"route name", "/routes", `{"name":"r/1","paths":["/"]}`, "name", "invalid value 'r/1': the only accepted ascii characters are alphanumerics or ., -, _, and ~"},
		{"empty segment", "/routes", `{"paths":["/a//b"]}`, "paths", "must not have empty segments"},
		{"bad percent", "/routes", `{"paths":["/a%zz"]}`, "paths", "invalid url-encoded value: '%zz'"},
		{"not normalized", "/routes", `{"paths":["/a/../b"]}`, "paths", "non-normalized path, consider use '/b' instead"},
		{"service path", "/services", `{"host":"h","path":"/a%zz"}`, "path", "invalid url-encoded value: '%zz'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, b := e.do(t, "POST", c.path, c.body)
			f, _ := b["fields"].(map[string]any)
			if code != 400 || b["code"] != float64(2) || f[c.field] != c.msg {
				t.Fatalf("= %d %v, want 400 code 2 %s: %q", code, b, c.field, c.msg)
			}
		})
	}
	ca1, _ := selfSigned(t, true)
	ca2, _ := selfSigned(t, true)
	code, b := e.do(t, "POST", "/ca_certificates", js(map[string]any{"cert": ca1 + ca2}))
	if code != 400 || b["message"] != "schema violation (please submit only one certificate at a time)" {
		t.Errorf("two CA certificates = %d %v", code, b)
	}
	code, b = e.do(t, "POST", "/config", `{"_format_version":"3.0","services":[{"name":"a b","host":"h"}]}`)
	if code != 400 || b["code"] != float64(14) {
		t.Errorf("bad name in a declarative file = %d %v", code, b)
	}
}

// TestKongFormatVersions: a "1.1" file shaped as decK writes them (ids,
// nested routes, a regex path without ~) and a "2.1" one import; the regex
// path is stored as Kong 3.x migrates it, and the same file again changes
// nothing.
func TestKongFormatVersions(t *testing.T) {
	e := setup(t, false)
	const v11 = `_format_version: "1.1"
services:
- connect_timeout: 60000
  id: 58076db2-28b6-423b-ba39-a797193017f8
  host: orders.internal
  name: svc1
  port: 80
  protocol: http
  routes:
  - name: r1
    id: 87b6a97e-f3f7-4c47-857a-7464cb9e202c
    https_redirect_status_code: 301
    paths:
    - /r1
    - /users/\d+/orders
`
	code, b := e.do(t, "POST", "/config", v11)
	if code != 201 || b["inserted"] != float64(2) {
		t.Fatalf("POST /config 1.1 = %d %v", code, b)
	}
	code, r := e.do(t, "GET", "/routes/r1", "")
	if code != 200 || !slices.Equal(names(r["paths"]), []string{"/r1", `~/users/\d+/orders`}) {
		t.Errorf("migrated route = %d %v", code, r)
	}
	if code, b := e.do(t, "POST", "/config", v11); code != 201 || b["changes"] != float64(0) {
		t.Errorf("same 1.1 file again = %d %v", code, b)
	}
	v21 := strings.Replace(v11, `"1.1"`, `"2.1"`, 1)
	if code, b := e.do(t, "POST", "/config", v21); code != 201 || b["changes"] != float64(0) {
		t.Errorf("the file as 2.1 = %d %v", code, b)
	}
}

// TestKeyAuthWithoutKeyReimport: a file declaring a credential without a
// key imports again with zero changes, the key kept; so does its export.
func TestKeyAuthWithoutKeyReimport(t *testing.T) {
	e := setup(t, false)
	const file = `{"_format_version":"3.0","consumers":[{"username":"u","keyauth_credentials":[{},{"tags":["b"]}]}]}`
	if code, b := e.do(t, "POST", "/config", file); code != 201 || b["inserted"] != float64(3) {
		t.Fatalf("first import = %d %v", code, b)
	}
	_, l := e.do(t, "GET", "/consumers/u/key-auth", "")
	if code, b := e.do(t, "POST", "/config", file); code != 201 || b["changes"] != float64(0) {
		t.Fatalf("re-import = %d %v", code, b)
	}
	if _, l2 := e.do(t, "GET", "/consumers/u/key-auth", ""); js(l2) != js(l) {
		t.Errorf("credentials changed:\n%v\n%v", l, l2)
	}
	code, exp := e.raw(t, "GET", "/config", "", "")
	if code != 200 {
		t.Fatalf("GET /config = %d", code)
	}
	if code, b := e.do(t, "POST", "/config", string(exp)); code != 201 || b["changes"] != float64(0) {
		t.Errorf("import of the export = %d %v", code, b)
	}
}

// TestCertificateBySNIName: as Kong, /certificates/{name} addresses the
// certificate of the SNI with that name; PUT of a name no SNI has creates
// a certificate with that SNI.
func TestCertificateBySNIName(t *testing.T) {
	e := setup(t, false)
	cert, key := selfSigned(t, false)
	code, c := e.do(t, "PUT", "/certificates/a.example.com", js(map[string]any{"cert": cert, "key": key}))
	if code != 200 || !slices.Equal(names(c["snis"]), []string{"a.example.com"}) {
		t.Fatalf("PUT /certificates/a.example.com = %d %v", code, c)
	}
	id := c["id"].(string)
	if code, g := e.do(t, "GET", "/certificates/a.example.com", ""); code != 200 || g["id"] != id {
		t.Errorf("GET by SNI name = %d %v", code, g)
	}
	if code, p := e.do(t, "PATCH", "/certificates/a.example.com", `{"snis":["a.example.com","b.example.com"]}`); code != 200 || p["id"] != id || len(names(p["snis"])) != 2 {
		t.Errorf("PATCH by SNI name = %d %v", code, p)
	}
	if code, p := e.do(t, "PUT", "/certificates/b.example.com", js(map[string]any{"cert": cert, "key": key, "tags": []string{"x"}})); code != 200 || p["id"] != id {
		t.Errorf("PUT by an existing SNI name = %d %v, want the same certificate", code, p)
	}
	if code, _ := e.do(t, "GET", "/certificates/nope.example.com", ""); code != 404 {
		t.Errorf("GET by an unknown name = %d, want 404", code)
	}
	if code, _ := e.do(t, "DELETE", "/certificates/b.example.com", ""); code != 204 {
		t.Fatalf("DELETE by SNI name = %d", code)
	}
	if n := e.count(t, "SELECT (SELECT count(*) FROM certificates) + (SELECT count(*) FROM snis)"); n != 0 {
		t.Errorf("left after DELETE by SNI name: %d", n)
	}
}
