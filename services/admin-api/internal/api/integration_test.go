//go:build integration

package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/api"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/app"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/outbox"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"gorm.io/gorm"
)

type env struct {
	url     string
	db      *gorm.DB
	brokers []string
	topic   string
}

func setup(t *testing.T, withRelay bool) *env {
	return setupDSN(t, withRelay, testenv.Database(t))
}

func setupTB(tb testing.TB) *env {
	return setupDSN(tb, true, testenv.Database(tb))
}

func setupDSN(t testing.TB, withRelay bool, dsn string) *env {
	t.Helper()
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	brokers := testenv.Kafka(t)
	db := testenv.OpenDatabase(t, dsn, log)
	topic := testenv.TopicPrefix(t) + wire.TopicChanges
	if err := broker.EnsureTopics(ctx, brokers, 30*time.Second, broker.Compacted(topic, nil)); err != nil {
		t.Fatal(err)
	}
	st := store.New(db, entity.Types)
	if withRelay {
		r := outbox.New(outbox.Config{DSN: dsn, Brokers: brokers, Topic: topic, Retention: time.Hour, Tick: time.Second}, db, log)
		rctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = r.Run(rctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	srv := httptest.NewServer(api.New(api.Config{MaxBodyBytes: 1 << 20, MaxConfigBytes: 128 << 20, ListenAddr: "test"}, app.New(st), nil, log))
	t.Cleanup(srv.Close)
	return &env{url: srv.URL, db: db, brokers: brokers, topic: topic}
}

func (e *env) do(t *testing.T, method, path, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	code, raw := testenv.Send(t, method, e.url+path, body, append([]string{"Content-Type", "application/json"}, hdr...)...)
	var m map[string]any
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: response is not a JSON object: %s", method, path, raw)
		}
	}
	return code, m
}

func (e *env) count(t *testing.T, q string) int64 {
	t.Helper()
	var n int64
	if err := e.db.Raw(q).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWritesReachChangesInOrder(t *testing.T) {
	e := setup(t, true)
	code, svc := e.do(t, "POST", "/services", `{"name":"orders","url":"http://orders.internal:8080/v1"}`)
	if code != 201 {
		t.Fatalf("POST /services = %d %v", code, svc)
	}
	code, route := e.do(t, "POST", "/services/orders/routes", `{"name":"orders-route","paths":["/orders"]}`)
	if code != 201 {
		t.Fatalf("POST route = %d %v", code, route)
	}
	code, _ = e.do(t, "PATCH", "/routes/orders-route", `{"paths":["/orders","/o"]}`)
	if code != 200 {
		t.Fatalf("PATCH route = %d", code)
	}
	code, _ = e.do(t, "DELETE", "/routes/orders-route", "")
	if code != 204 {
		t.Fatalf("DELETE route = %d", code)
	}
	if n := e.count(t, "SELECT count(*) FROM services"); n != 1 {
		t.Fatalf("services rows = %d, want 1", n)
	}
	if n := e.count(t, "SELECT count(*) FROM outbox"); n != 4 {
		t.Fatalf("outbox rows = %d, want 4", n)
	}
	evs := testenv.Dedupe(testenv.ReadChanges(t, t.Context(), e.brokers, e.topic, 4, 30*time.Second))
	want := []struct {
		tx  uint64
		op  wire.Op
		typ string
		id  any
	}{
		{1, wire.OpUpsert, "services", svc["id"]},
		{2, wire.OpUpsert, "routes", route["id"]},
		{3, wire.OpUpsert, "routes", route["id"]},
		{4, wire.OpDelete, "routes", route["id"]},
	}
	if len(evs) != len(want) {
		t.Fatalf("events = %d, want %d", len(evs), len(want))
	}
	for i, w := range want {
		ev := evs[i]
		if ev.Tx != w.tx || ev.Op != w.op || ev.Type != w.typ || ev.ID != w.id || ev.Index != 0 || ev.Count != 1 {
			t.Errorf("event %d = %+v, want tx %d %s %s/%v", i, ev, w.tx, w.op, w.typ, w.id)
		}
	}
	ent := testenv.Entity(t, evs[0])
	if ent["host"] != "orders.internal" || ent["port"] != float64(8080) || ent["path"] != "/v1" || ent["retries"] != float64(5) {
		t.Errorf("service entity = %v", ent)
	}
	// The event carries the entity exactly as GET returns it.
	resp, err := http.Get(e.url + "/services/orders")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, evs[0].Entity) {
		t.Errorf("GET body and event entity differ:\n%s\n%s", got, evs[0].Entity)
	}
	testenv.Eventually(t, 10*time.Second, "outbox rows marked published", func() bool {
		return e.count(t, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0
	})
	if code, st := e.do(t, "GET", "/status", ""); code != 200 || st["outbox"].(map[string]any)["last_published_tx"] != float64(4) {
		t.Errorf("GET /status = %d %v", code, st)
	}
}

func TestBadWritesWriteNothing(t *testing.T) {
	e := setup(t, false)
	if code, _ := e.do(t, "POST", "/services", `{"name":"keep","host":"keep.internal"}`); code != 201 {
		t.Fatalf("seed service = %d", code)
	}
	cases := []struct {
		name, method, path, body string
		status, code             int
		field                    string
	}{
		{"missing required field", "POST", "/services", `{"name":"a"}`, 400, 2, "host"},
		{"unknown field", "POST", "/services", `{"host":"a.b","colour":"red"}`, 400, 2, "colour"},
		{"wrong type", "POST", "/services", `{"host":"a.b","port":"80"}`, 400, 2, "port"},
		{"port out of range", "POST", "/services", `{"host":"a.b","port":70000}`, 400, 2, "port"},
		{"malformed JSON", "POST", "/services", `{"host":`, 400, 2, "@body"},
		{"not an object", "POST", "/services", `[1,2]`, 400, 2, "@body"},
		{"invalid UTF-8", "POST", "/services", "{\"host\":\"a\xff\"}", 400, 2, "@body"},
		{"route without matcher", "POST", "/routes", `{"protocols":["http"]}`, 400, 2, "@entity"},
		{"route to missing service", "POST", "/routes", `{"paths":["/x"],"service":{"id":"6f0c1d7e-1111-4222-8333-944455556666"}}`, 400, 4, "service"},
		{"route to missing service name", "POST", "/routes", `{"paths":["/x"],"service":{"name":"nope"}}`, 400, 4, "service"},
		{"duplicate name", "POST", "/services", `{"name":"keep","host":"other"}`, 409, 5, "name"},
		{"patch to bad value", "PATCH", "/services/keep", `{"protocol":"gopher"}`, 400, 2, "protocol"},
		{"patch missing", "PATCH", "/services/nope", `{"retries":1}`, 404, 6, ""},
		{"entity too large for a record", "POST", "/services", `{"host":"a.b","tags":["` + strings.Repeat("t", 1_000_000) + `"]}`, 400, 2, "@entity"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := e.do(t, c.method, c.path, c.body)
			if code != c.status || body["code"] != float64(c.code) {
				t.Fatalf("%s %s = %d %v, want %d code %d", c.method, c.path, code, body, c.status, c.code)
			}
			if _, ok := body["message"].(string); !ok {
				t.Errorf("no message in %v", body)
			}
			if c.field != "" {
				fields, _ := body["fields"].(map[string]any)
				if _, ok := fields[c.field]; !ok {
					t.Errorf("fields %v lack %q", fields, c.field)
				}
			}
		})
	}
	if n := e.count(t, "SELECT count(*) FROM services") + e.count(t, "SELECT count(*) FROM routes"); n != 1 {
		t.Errorf("entity rows = %d, want only the seed", n)
	}
	if n := e.count(t, "SELECT count(*) FROM outbox"); n != 1 {
		t.Errorf("outbox rows = %d, want only the seed's", n)
	}
	if n := e.count(t, "SELECT tx FROM outbox_counter"); n != 1 {
		t.Errorf("outbox counter = %d, want 1 (failed writes give their number back)", n)
	}
}

func TestRestrictedDeleteAndNesting(t *testing.T) {
	e := setup(t, false)
	e.do(t, "POST", "/services", `{"name":"s1","host":"s1.internal"}`)
	e.do(t, "POST", "/services", `{"name":"s2","host":"s2.internal"}`)
	code, r := e.do(t, "POST", "/services/s1/routes", `{"name":"r1","hosts":["a.example"]}`)
	if code != 201 {
		t.Fatalf("nested POST = %d %v", code, r)
	}
	code, body := e.do(t, "DELETE", "/services/s1", "")
	if code != 400 || body["code"] != float64(4) || body["fields"].(map[string]any)["@referenced_by"] != "routes" {
		t.Fatalf("DELETE used service = %d %v", code, body)
	}
	if code, _ := e.do(t, "GET", "/services/s2/routes/r1", ""); code != 404 {
		t.Errorf("route under the wrong service = %d, want 404", code)
	}
	if code, l := e.do(t, "GET", "/services/s1/routes", ""); code != 200 || len(l["data"].([]any)) != 1 {
		t.Errorf("nested list = %d %v", code, l)
	}
	if code, l := e.do(t, "GET", "/services/s2/routes", ""); code != 200 || len(l["data"].([]any)) != 0 {
		t.Errorf("nested list of s2 = %d %v", code, l)
	}
	if code, _ := e.do(t, "DELETE", "/routes/r1", ""); code != 204 {
		t.Fatalf("DELETE route = %d", code)
	}
	if code, _ := e.do(t, "DELETE", "/services/s1", ""); code != 204 {
		t.Fatalf("DELETE service = %d", code)
	}
	if code, _ := e.do(t, "DELETE", "/services/s1", ""); code != 204 {
		t.Fatalf("DELETE missing service = %d, want 204 as Kong", code)
	}
	if n := e.count(t, "SELECT count(*) FROM outbox WHERE op = 'delete'"); n != 2 {
		t.Errorf("delete events = %d, want 2 (a missing entity's delete writes nothing)", n)
	}
}

func TestPaging(t *testing.T) {
	e := setup(t, false)
	for i := range 7 {
		if code, _ := e.do(t, "POST", "/services", fmt.Sprintf(`{"name":"s%d","host":"h%d.internal","tags":["t%d","all"]}`, i, i, i%2)); code != 201 {
			t.Fatal("seed failed")
		}
	}
	seen := map[string]bool{}
	path := "/services?size=3"
	pages := 0
	for path != "" {
		code, body := e.do(t, "GET", path, "")
		if code != 200 {
			t.Fatalf("GET %s = %d %v", path, code, body)
		}
		for _, d := range body["data"].([]any) {
			seen[d.(map[string]any)["name"].(string)] = true
		}
		pages++
		next, _ := body["next"].(string)
		path = next
	}
	if len(seen) != 7 || pages != 3 {
		t.Errorf("paged %d entities in %d pages, want 7 in 3", len(seen), pages)
	}
	if code, body := e.do(t, "GET", "/services?tags=t1", ""); code != 200 || len(body["data"].([]any)) != 3 {
		t.Errorf("tags=t1: %d %v", code, body)
	}
	if code, body := e.do(t, "GET", "/services?tags=t0,all", ""); code != 200 || len(body["data"].([]any)) != 4 {
		t.Errorf("tags=t0,all: %d %v", code, body)
	}
	if code, body := e.do(t, "GET", "/services?size=1001", ""); code != 400 || body["code"] != float64(9) {
		t.Errorf("size=1001: %d %v", code, body)
	}
	if code, body := e.do(t, "GET", "/services?offset=garbage", ""); code != 400 || body["code"] != float64(7) {
		t.Errorf("bad offset: %d %v", code, body)
	}
}

// TestConcurrentWritesAreGapFreeInCommitOrder runs many concurrent write
// transactions, some conflicting on the same entities, and checks that the
// published transaction numbers are exactly 1..N, each transaction's events
// are contiguous, and the last event of every entity equals what Postgres
// holds (so numbers follow commit order).
func TestConcurrentWritesAreGapFreeInCommitOrder(t *testing.T) {
	e := setup(t, true)
	const services = 5
	for i := range services {
		if code, _ := e.do(t, "POST", "/services", fmt.Sprintf(`{"name":"s%d","host":"h.internal"}`, i)); code != 201 {
			t.Fatal("seed failed")
		}
	}
	const workers, each = 8, 25
	var mu sync.Mutex
	ok := services
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for j := range each {
				var code int
				switch j % 4 {
				case 0, 1:
					code, _ = e.do(t, "PATCH", fmt.Sprintf("/services/s%d", (w+j)%services), fmt.Sprintf(`{"retries":%d}`, w*100+j))
				case 2:
					code, _ = e.do(t, "POST", "/routes", fmt.Sprintf(`{"name":"r-%d-%d","paths":["/p"],"service":{"name":"s%d"}}`, w, j, j%services))
				case 3:
					// A failing write: it must not take a number.
					code, _ = e.do(t, "POST", "/services", `{"name":"s0","host":"dup"}`)
				}
				if code >= 200 && code < 300 {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	evs := testenv.Dedupe(testenv.ReadChanges(t, t.Context(), e.brokers, e.topic, ok, 60*time.Second))
	if len(evs) != ok {
		t.Fatalf("distinct events = %d, want %d", len(evs), ok)
	}
	last := map[string]wire.ChangeEvent{}
	for i, ev := range evs {
		if ev.Tx != uint64(i+1) || ev.Index != 0 || ev.Count != 1 {
			t.Fatalf("event %d has tx %d index %d count %d; want tx %d, 0 of 1", i, ev.Tx, ev.Index, ev.Count, i+1)
		}
		last[wire.Key(ev.Type, ev.ID)] = ev
	}
	var rows []struct {
		ID   string
		Body string
	}
	if err := e.db.Raw(`SELECT id::text AS id, body::text AS body FROM services`).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		ev, found := last[wire.Key("services", r.ID)]
		if !found {
			t.Fatalf("no event for service %s", r.ID)
		}
		m, _ := entity.Decode([]byte(r.Body))
		want, _ := entity.Canonical(m)
		if !bytes.Equal(want, ev.Entity) {
			t.Errorf("service %s: last event (tx %d) is not the committed state:\nevent %s\nrow   %s", r.ID, ev.Tx, ev.Entity, want)
		}
	}
	txs := make([]int, 0, len(evs))
	for _, ev := range evs {
		txs = append(txs, int(ev.Tx))
	}
	if !sort.IntsAreSorted(txs) {
		t.Error("events are not in tx order")
	}
}

func TestIdempotencyKey(t *testing.T) {
	e := setup(t, false)
	body := `{"name":"idem","host":"idem.internal"}`
	code1, first := e.do(t, "POST", "/services", body, "Idempotency-Key", "k-1")
	if code1 != 201 {
		t.Fatalf("first = %d %v", code1, first)
	}
	// The retry (as after a connection lost past COMMIT) gets the first
	// response, not a 409, and writes nothing.
	code2, second := e.do(t, "POST", "/services", body, "Idempotency-Key", "k-1")
	if code2 != 201 || second["id"] != first["id"] || second["created_at"] != first["created_at"] {
		t.Fatalf("retry = %d %v, want the first response %v", code2, second, first)
	}
	if code, b := e.do(t, "POST", "/services", `{"name":"other","host":"h"}`, "Idempotency-Key", "k-1"); code != 422 {
		t.Errorf("same key, other request = %d %v, want 422", code, b)
	}
	// Concurrent requests with one key write once.
	var wg sync.WaitGroup
	codes := make([]int, 6)
	ids := make([]any, 6)
	for i := range codes {
		wg.Go(func() {
			var b map[string]any
			codes[i], b = e.do(t, "POST", "/services", `{"name":"conc","host":"c.internal"}`, "Idempotency-Key", "k-2")
			ids[i] = b["id"]
		})
	}
	wg.Wait()
	for i := range codes {
		if codes[i] != 201 || ids[i] != ids[0] {
			t.Errorf("concurrent %d = %d %v, want 201 %v", i, codes[i], ids[i], ids[0])
		}
	}
	// A keyed DELETE replays its 204.
	for range 2 {
		if code, _ := e.do(t, "DELETE", "/services/idem", "", "Idempotency-Key", "k-3"); code != 204 {
			t.Errorf("keyed delete = %d", code)
		}
	}
	if n := e.count(t, "SELECT count(*) FROM services"); n != 1 {
		t.Errorf("services = %d, want 1 (conc)", n)
	}
	if n := e.count(t, "SELECT count(*) FROM outbox"); n != 3 {
		t.Errorf("outbox rows = %d, want 3 (idem, conc, delete idem)", n)
	}
}

func TestDatabaseDownAnswers503(t *testing.T) {
	e := setupProxied(t)
	proxy := e.proxy
	count := func(q string) int64 { return e.truth(t, q) }
	if code, _ := e.do(t, "POST", "/services", `{"name":"before","host":"h"}`); code != 201 {
		t.Fatal("seed failed")
	}
	proxy.Cut()
	for _, req := range [][3]string{
		{"POST", "/services", `{"name":"during","host":"h"}`},
		{"PATCH", "/services/before", `{"retries":1}`},
		{"DELETE", "/services/before", ``},
		{"GET", "/services", ``},
	} {
		code, body := e.do(t, req[0], req[1], req[2])
		if req[0] == "POST" && code == 500 && body["code"] == float64(8) && strings.Contains(fmt.Sprint(body["message"]), "unknown") {
			// The create went out whole on a pooled connection that the
			// cut closed: from admin-api's side its COMMIT was sent, and
			// with Postgres unreachable the outcome cannot be proved.
			continue
		}
		if code != 503 || body["code"] != float64(8) || body["message"] == nil {
			t.Errorf("%s %s while Postgres is down = %d %v, want 503 code 8", req[0], req[1], code, body)
		}
	}
	if code, _ := e.do(t, "GET", "/health", ""); code != 503 {
		t.Errorf("/health while Postgres is down = %d", code)
	}
	proxy.Restore()
	testenv.Eventually(t, 10*time.Second, "writes succeed again", func() bool {
		code, _ := e.do(t, "POST", "/services", `{"name":"after","host":"h"}`)
		return code == 201
	})
	if n := count("SELECT count(*) FROM services"); n != 2 {
		t.Errorf("services = %d, want before and after", n)
	}
	if n := count("SELECT count(*) FROM outbox"); n != 2 {
		t.Errorf("outbox rows = %d, want 2", n)
	}
	if n := count("SELECT tx FROM outbox_counter"); n != 2 {
		t.Errorf("counter = %d, want 2", n)
	}
}
