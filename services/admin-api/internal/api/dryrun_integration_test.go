//go:build integration

package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/api"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/app"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
	"github.com/deltaplane/deltaplane/shared/broker"
)

// changed is declared with the orders service moved, the users service
// (and so its route users-r) gone and a consumer added.
var changed = strings.NewReplacer(
	"url: http://orders.internal:8080", "url: https://orders.internal:8443",
	"  - name: users\n    host: users.internal\n", "",
	"routes:\n  - name: users-r\n    hosts: [users.example]\n    service: users\n", "",
	"consumers:\n  - username: alice", "consumers:\n  - username: bob\n  - username: alice",
).Replace(declared)

// POST /config?dry_run=true reports what the import would change and the
// size of its delta, and writes nothing: no entity row, no outbox row, no
// transaction number, no record on cp.changes. The import that follows
// does what the preview said.
func TestConfigDryRunWritesNothing(t *testing.T) {
	e := setup(t, true)
	if code, b := e.raw(t, "POST", "/config", declared, "application/yaml"); code != 201 {
		t.Fatalf("POST /config = %d %s", code, b)
	}
	testenv.Eventually(t, 30*time.Second, "the import published", func() bool {
		return e.count(t, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
	})
	c := broker.Client(e.brokers)
	_, endBefore, err := broker.PartitionBounds(t.Context(), c, e.topic)
	if err != nil {
		t.Fatal(err)
	}
	rows := func() string {
		var parts []string
		for _, q := range []string{"SELECT count(*) FROM outbox", "SELECT tx FROM outbox_counter", "SELECT count(*) FROM services",
			"SELECT count(*) FROM routes", "SELECT count(*) FROM consumers", "SELECT coalesce(max((body->>'updated_at')::bigint), 0) FROM services"} {
			parts = append(parts, strconv.FormatInt(e.count(t, q), 10))
		}
		return strings.Join(parts, " ")
	}
	before := rows()

	code, b := e.raw(t, "POST", "/config?dry_run=true", changed, "application/yaml")
	if code != 200 {
		t.Fatalf("POST /config?dry_run=true = %d %s", code, b)
	}
	var p app.Preview
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if after := rows(); after != before {
		t.Errorf("dry run changed the database: %s -> %s", before, after)
	}
	if _, end, err := broker.PartitionBounds(t.Context(), c, e.topic); err != nil || end != endBefore {
		t.Errorf("dry run published: cp.changes end %d -> %d (%v)", endBefore, end, err)
	}

	if !p.DryRun || len(p.Creates) != 1 || p.Creates[0].Type != "consumers" || p.Creates[0].Name != "bob" {
		t.Errorf("creates = %+v", p.Creates)
	}
	if len(p.Updates) != 1 || p.Updates[0].Name != "orders" || strings.Join(p.Updates[0].Fields, ",") != "port,protocol" {
		t.Errorf("updates = %+v, want orders with port,protocol", p.Updates)
	}
	var svc, route *app.PreviewItem
	for i, d := range p.Deletes {
		switch d.Type {
		case "services":
			svc = &p.Deletes[i]
		case "routes":
			route = &p.Deletes[i]
		}
	}
	if len(p.Deletes) != 2 || svc == nil || svc.Name != "users" || svc.CascadeFrom != "" ||
		route == nil || route.Name != "users-r" || route.CascadeFrom != "services/"+svc.ID || p.Cascades["routes"] != 1 {
		t.Errorf("deletes = %+v, cascades %v; want users and its route users-r by cascade", p.Deletes, p.Cascades)
	}
	if p.Delta.Versions != 1 || p.Delta.Records != 4 || p.Delta.Bytes < 200 {
		t.Errorf("delta = %+v, want one version of 4 records", p.Delta)
	}

	// The import does what the preview said.
	code, b = e.raw(t, "POST", "/config", changed, "application/yaml")
	var res app.ConfigResult
	_ = json.Unmarshal(b, &res)
	if code != 201 || res != p.Counts {
		t.Errorf("import = %d %s, preview counted %+v", code, b, p.Counts)
	}
	// An invalid file is refused by the preview as by the import.
	if code, b := e.raw(t, "POST", "/config?dry_run=true", `{"_format_version":"3.0","routes":[{"name":"r","service":"nope"}]}`, "application/json"); code != 400 {
		t.Errorf("dry run of an unresolvable reference = %d %s, want 400", code, b)
	}
}

// Every write answers with the transaction it committed (Deltaplane-Tx),
// 0 when it changed nothing; declarative imports too.
func TestWritesAnswerTheirTransaction(t *testing.T) {
	e := setup(t, false)
	tx := func(method, path, body, ctype string) uint64 {
		t.Helper()
		req, _ := http.NewRequestWithContext(context.Background(), method, e.url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s = %d", method, path, resp.StatusCode)
		}
		n, err := strconv.ParseUint(resp.Header.Get(api.HeaderTx), 10, 64)
		if err != nil {
			t.Fatalf("%s %s: %s = %q", method, path, api.HeaderTx, resp.Header.Get(api.HeaderTx))
		}
		return n
	}
	last := func() uint64 { return uint64(e.count(t, "SELECT tx FROM outbox_counter")) }
	for _, w := range []struct{ method, path, body, ctype string }{
		{"POST", "/services", `{"name":"s1","host":"a.internal"}`, "application/json"},
		{"PUT", "/services/s1", `{"host":"b.internal"}`, "application/json"},
		{"PATCH", "/services/s1", `{"port":81}`, "application/json"},
		{"POST", "/services/s1/routes", `{"name":"r1","paths":["/r1"]}`, "application/json"},
		{"DELETE", "/routes/r1", ``, "application/json"},
		{"DELETE", "/services/s1", ``, "application/json"},
		{"POST", "/config", declared, "application/yaml"},
	} {
		if got, want := tx(w.method, w.path, w.body, w.ctype), last(); got != want || got == 0 {
			t.Errorf("%s %s: %s %d, want the last committed %d", w.method, w.path, api.HeaderTx, got, want)
		}
	}
	if got := tx("DELETE", "/services/absent", "", "application/json"); got != 0 {
		t.Errorf("DELETE of an absent service: %s %d, want 0", api.HeaderTx, got)
	}
	if got := tx("POST", "/config", declared, "application/yaml"); got != 0 {
		t.Errorf("re-import of the same file: %s %d, want 0", api.HeaderTx, got)
	}
}
