//go:build integration

package api_test

import (
	"encoding/json"
	"testing"
)

// TestPipelinedWriteErrors: entity writes reach Postgres pipelined with
// the commit (or a later statement); their errors still answer as before.
func TestPipelinedWriteErrors(t *testing.T) {
	e := setupTB(t)
	if code, b := e.raw(t, "POST", "/services", `{"name":"s1","host":"h"}`, "application/json"); code != 201 {
		t.Fatalf("create = %d %s", code, b)
	}
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     float64
	}{
		{"duplicate name", "POST", "/services", `{"name":"s1","host":"h"}`, 409, 5},
		{"missing reference", "POST", "/routes", `{"paths":["/"],"service":{"id":"00000000-0000-0000-0000-000000000009"}}`, 400, 4},
		{"patch of a missing entity", "PATCH", "/services/00000000-0000-0000-0000-000000000001", `{"host":"h2"}`, 404, 6},
		{"declarative unique violation", "POST", "/config", "_format_version: \"3.0\"\nconsumers:\n  - {username: a, custom_id: x}\n  - {username: b, custom_id: x}\n", 400, 14},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ct := "application/json"
			if tc.path == "/config" {
				ct = "application/yaml"
			}
			code, b := e.raw(t, tc.method, tc.path, tc.body, ct)
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			if code != tc.status || m["code"] != tc.code {
				t.Errorf("= %d %s; want %d with code %v", code, b, tc.status, tc.code)
			}
		})
	}
	if n := e.count(t, "SELECT count(*) FROM outbox"); n != 1 {
		t.Errorf("outbox rows = %d, want 1 (failed writes publish nothing)", n)
	}
	if code, b := e.raw(t, "PATCH", "/services/s1", `{"host":"h2"}`, "application/json"); code != 200 {
		t.Fatalf("patch = %d %s", code, b)
	}
	if n := e.count(t, "SELECT max(tx) FROM outbox"); n != 2 {
		t.Errorf("last tx = %d, want 2 (failed writes use no number)", n)
	}
}
