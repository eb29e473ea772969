//go:build integration

package api_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
)

const declared = `
_format_version: "3.0"
services:
  - name: orders
    url: http://orders.internal:8080
    routes:
      - name: orders-r
        paths: [/orders]
        plugins:
          - name: key-auth
      - name: orders-admin
        paths: [/orders/admin]
    plugins:
      - name: rate-limiting
        config:
          minute: 10
  - name: users
    host: users.internal
consumers:
  - username: alice
    keyauth_credentials:
      - key: alice-key
upstreams:
  - name: orders.internal
    targets:
      - target: 10.0.0.1
      - target: 10.0.0.2:9000
        weight: 50
routes:
  - name: users-r
    hosts: [users.example]
    service: users
plugins:
  - name: rate-limiting
    consumer: alice
    config:
      second: 2
`

func (e *env) raw(t *testing.T, method, path, body, ctype string) (int, []byte) {
	t.Helper()
	return testenv.Send(t, method, e.url+path, body, "Content-Type", ctype)
}

func TestDeclarativeConfig(t *testing.T) {
	e := setup(t, true)
	code, b := e.raw(t, "POST", "/config", declared, "application/yaml")
	if code != 201 {
		t.Fatalf("POST /config = %d %s", code, b)
	}
	var sum map[string]float64
	_ = json.Unmarshal(b, &sum)
	// 2 services, 3 routes, 3 plugins, 1 consumer, 1 credential, 1 upstream, 2 targets.
	if sum["inserted"] != 13 || sum["changes"] != 13 {
		t.Fatalf("import summary = %s", b)
	}
	if n := e.count(t, "SELECT count(DISTINCT tx) FROM outbox"); n != 1 {
		t.Errorf("import spans %d transactions, want 1", n)
	}
	if n := e.count(t, "SELECT count(*) FROM outbox WHERE cnt = 13"); n != 13 {
		t.Errorf("outbox rows of the import = %d, want 13", n)
	}
	if code, p := e.do(t, "GET", "/routes/orders-r/plugins", ""); code != 200 || len(p["data"].([]any)) != 1 {
		t.Errorf("nested plugin = %d %v", code, p)
	}
	if code, tg := e.do(t, "GET", "/upstreams/orders.internal/targets/10.0.0.1:8000", ""); code != 200 || tg["weight"] != float64(100) {
		t.Errorf("target = %d %v", code, tg)
	}

	// Export, then import the export: nothing changes, nothing is emitted.
	code, exp := e.raw(t, "GET", "/config", "", "")
	if code != 200 {
		t.Fatalf("GET /config = %d", code)
	}
	counter := e.count(t, "SELECT tx FROM outbox_counter")
	code, b = e.raw(t, "POST", "/config", string(exp), "application/json")
	if code != 201 || !strings.Contains(string(b), `"changes":0`) {
		t.Fatalf("re-import of the export = %d %s", code, b)
	}
	// The original file again: also nothing (ids matched by name).
	code, b = e.raw(t, "POST", "/config", declared, "application/yaml")
	if code != 201 || !strings.Contains(string(b), `"changes":0`) {
		t.Fatalf("re-import of the file = %d %s", code, b)
	}
	if n := e.count(t, "SELECT tx FROM outbox_counter"); n != counter {
		t.Errorf("no-op imports took transaction numbers: %d -> %d", counter, n)
	}

	// A changed file emits only the differences, in one transaction.
	changed := strings.Replace(declared, "      - name: orders-admin\n        paths: [/orders/admin]\n", "", 1)
	changed = strings.Replace(changed, "host: users.internal", "host: users2.internal", 1)
	code, b = e.raw(t, "POST", "/config", changed, "application/yaml")
	if code != 201 {
		t.Fatalf("changed import = %d %s", code, b)
	}
	var rows []struct {
		Op, Type string
	}
	e.db.Raw(`SELECT op, type FROM outbox WHERE tx = ? ORDER BY idx`, counter+1).Scan(&rows)
	if len(rows) != 2 || rows[0].Op != "upsert" || rows[0].Type != "services" || rows[1].Op != "delete" || rows[1].Type != "routes" {
		t.Errorf("diff events = %+v, want the service update and the route delete", rows)
	}
	testenv.Eventually(t, 20*time.Second, "import published", func() bool {
		return e.count(t, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
	})

	// Invalid configurations: 400 code 14, nothing written.
	before := e.count(t, "SELECT count(*) FROM outbox")
	for name, body := range map[string]string{
		"no format version": "services: []",
		"bad entity":        "_format_version: \"3.0\"\nservices:\n  - name: x\n",
		"dangling ref":      "_format_version: \"3.0\"\nroutes:\n  - paths: [/]\n    service: nope\n",
		"unknown type":      "_format_version: \"3.0\"\nwidgets: []\n",
		"not yaml":          "{{{",
		"duplicate name":    "_format_version: \"3.0\"\nservices:\n  - {name: a, host: h}\n  - {name: a, host: h}\n",
	} {
		t.Run(name, func(t *testing.T) {
			code, b := e.raw(t, "POST", "/config", body, "application/yaml")
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			if code != 400 || m["code"] != float64(14) || m["name"] != "invalid declarative configuration" {
				t.Errorf("= %d %s", code, b)
			}
		})
	}
	if n := e.count(t, "SELECT count(*) FROM outbox"); n != before {
		t.Errorf("invalid imports wrote %d outbox rows", n-before)
	}
	// Replacing with an empty configuration deletes everything, children first.
	code, b = e.raw(t, "POST", "/config", `{"_format_version":"3.0"}`, "application/json")
	if code != 201 || !bytes.Contains(b, []byte(`"deleted":12`)) {
		t.Errorf("empty import = %d %s", code, b)
	}
	if n := e.count(t, "SELECT (SELECT count(*) FROM services) + (SELECT count(*) FROM plugins) + (SELECT count(*) FROM targets)"); n != 0 {
		t.Errorf("entities left = %d", n)
	}
}
