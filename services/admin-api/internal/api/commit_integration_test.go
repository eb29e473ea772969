//go:build integration

package api_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
)

// commitTag is the CommandComplete message of a COMMIT: the server's
// answer that a transaction committed.
var commitTag = []byte("COMMIT\x00")

// proxiedEnv is an admin-api whose Postgres connections go through a
// proxy that can cut them or lose the answer to a COMMIT, and a direct
// connection to read the truth.
type proxiedEnv struct {
	*env
	proxy  *testenv.Proxy
	direct *gorm.DB
}

func setupProxied(t *testing.T) *proxiedEnv {
	dsn := testenv.Database(t)
	u, _ := url.Parse(dsn)
	proxy := testenv.NewProxy(t, u.Host)
	e := setupDSN(t, false, proxy.DSN(t, dsn))
	direct, err := gorm.Open(postgres.Open(dsn))
	if err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := direct.DB(); err == nil {
		t.Cleanup(func() { sqlDB.Close() })
	}
	return &proxiedEnv{env: e, proxy: proxy, direct: direct}
}

func (e *proxiedEnv) truth(t *testing.T, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := e.direct.Raw(q, args...).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// doLosingCommit sends a request whose COMMIT reaches Postgres and commits
// while its answer is lost on the way back to admin-api.
func (e *proxiedEnv) doLosingCommit(t *testing.T, method, path, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	lost := e.proxy.Lost()
	e.proxy.LoseReply(commitTag)
	code, b := e.do(t, method, path, body, hdr...)
	if e.proxy.Lost() != lost+1 {
		t.Fatalf("%s %s: the proxy lost no COMMIT answer (got %d %v)", method, path, code, b)
	}
	return code, b
}

// notNothingWritten fails when a write that Postgres committed was
// answered with the promise that nothing was written.
func notNothingWritten(t *testing.T, what string, code int, b map[string]any) {
	t.Helper()
	if code == 503 {
		t.Errorf("%s committed in Postgres but was answered %d %v (\"nothing was written\")", what, code, b)
	}
}

// TestLostCommitAnswerIsResolved: when the connection fails after COMMIT
// was sent, admin-api finds out whether the transaction committed instead
// of answering 503 "nothing was written" for a write that Postgres has.
func TestLostCommitAnswerIsResolved(t *testing.T) {
	e := setupProxied(t)
	if code, b := e.do(t, "POST", "/services", `{"name":"seed","host":"seed.internal"}`); code != 201 {
		t.Fatalf("seed = %d %v", code, b)
	}

	t.Run("create", func(t *testing.T) {
		code, b := e.doLosingCommit(t, "POST", "/services", `{"name":"created","host":"c.internal"}`)
		if n := e.truth(t, `SELECT count(*) FROM services WHERE name = 'created'`); n != 1 {
			t.Fatalf("services named created = %d, want 1 (the proxy should lose the answer of a committed COMMIT)", n)
		}
		notNothingWritten(t, "POST /services", code, b)
		if code != 201 || b["name"] != "created" {
			t.Errorf("POST /services = %d %v, want 201 (it committed)", code, b)
		}
	})

	t.Run("create consumer", func(t *testing.T) {
		code, b := e.doLosingCommit(t, "POST", "/consumers", `{"username":"alice"}`)
		if n := e.truth(t, `SELECT count(*) FROM consumers WHERE username = 'alice'`); n != 1 {
			t.Fatalf("consumers = %d, want 1", n)
		}
		notNothingWritten(t, "POST /consumers", code, b)
		if code != 201 {
			t.Errorf("POST /consumers = %d %v, want 201", code, b)
		}
	})

	t.Run("patch", func(t *testing.T) {
		code, b := e.doLosingCommit(t, "PATCH", "/services/seed", `{"retries":7}`)
		if n := e.truth(t, `SELECT count(*) FROM services WHERE name = 'seed' AND body->>'retries' = '7'`); n != 1 {
			t.Fatalf("the patch is not in Postgres")
		}
		notNothingWritten(t, "PATCH /services/seed", code, b)
		if code != 200 || b["retries"] != float64(7) {
			t.Errorf("PATCH = %d %v, want 200 retries 7", code, b)
		}
	})

	t.Run("put", func(t *testing.T) {
		code, b := e.doLosingCommit(t, "PUT", "/services/put-one", `{"host":"p.internal"}`)
		if n := e.truth(t, `SELECT count(*) FROM services WHERE name = 'put-one'`); n != 1 {
			t.Fatalf("the put is not in Postgres")
		}
		notNothingWritten(t, "PUT /services/put-one", code, b)
		if code != 200 {
			t.Errorf("PUT = %d %v, want 200", code, b)
		}
	})

	t.Run("cascading delete", func(t *testing.T) {
		if code, b := e.do(t, "POST", "/consumers", `{"username":"doomed"}`); code != 201 {
			t.Fatalf("consumer = %d %v", code, b)
		}
		if code, b := e.do(t, "POST", "/consumers/doomed/key-auth", `{"key":"doomed-key"}`); code != 201 {
			t.Fatalf("credential = %d %v", code, b)
		}
		code, b := e.doLosingCommit(t, "DELETE", "/consumers/doomed", "")
		if n := e.truth(t, `SELECT (SELECT count(*) FROM consumers WHERE username = 'doomed') + (SELECT count(*) FROM keyauth_credentials WHERE key = 'doomed-key')`); n != 0 {
			t.Fatalf("the delete is not in Postgres")
		}
		notNothingWritten(t, "DELETE /consumers/doomed", code, b)
		if code != 204 {
			t.Errorf("DELETE = %d %v, want 204", code, b)
		}
	})

	t.Run("config", func(t *testing.T) {
		lost := e.proxy.Lost()
		e.proxy.LoseReply(commitTag)
		code, raw := e.raw(t, "POST", "/config", "_format_version: \"3.0\"\nservices:\n  - name: imported\n    host: i.internal\n", "application/yaml")
		if e.proxy.Lost() != lost+1 {
			t.Fatalf("the proxy lost no COMMIT answer (got %d %s)", code, raw)
		}
		if n := e.truth(t, `SELECT count(*) FROM services`); n != 1 {
			t.Fatalf("services after the import = %d, want 1", n)
		}
		if code == 503 || code != 201 {
			t.Errorf("POST /config = %d %s, want 201 (it committed)", code, raw)
		}
	})

	// Every committed write has its outbox rows: one per change.
	if n := e.truth(t, `SELECT count(DISTINCT tx) FROM outbox`); n != e.truth(t, `SELECT tx FROM outbox_counter`) {
		t.Errorf("outbox transactions = %d, counter = %d", n, e.truth(t, `SELECT tx FROM outbox_counter`))
	}
}

// TestIdempotentRetryAfterLostCommit is RELIABILITY scenario 4: the
// connection is lost after COMMIT was sent; the client retries with the
// same Idempotency-Key and gets the first response; there is exactly one
// row and one event.
func TestIdempotentRetryAfterLostCommit(t *testing.T) {
	e := setupProxied(t)
	body := `{"name":"once","host":"once.internal"}`
	code1, first := e.doLosingCommit(t, "POST", "/services", body, "Idempotency-Key", "lost-1")
	notNothingWritten(t, "keyed POST /services", code1, first)
	code2, second := e.do(t, "POST", "/services", body, "Idempotency-Key", "lost-1")
	if code2 != 201 || second["name"] != "once" {
		t.Fatalf("retry = %d %v, want 201", code2, second)
	}
	if code1 == 201 && second["id"] != first["id"] {
		t.Errorf("retry id %v, first id %v", second["id"], first["id"])
	}
	if n := e.truth(t, `SELECT count(*) FROM services`); n != 1 {
		t.Errorf("services = %d, want 1", n)
	}
	if n := e.truth(t, `SELECT count(*) FROM outbox`); n != 1 {
		t.Errorf("outbox rows = %d, want 1", n)
	}
	if n := e.truth(t, `SELECT count(*) FROM idempotency_keys`); n != 1 {
		t.Errorf("idempotency records = %d, want 1", n)
	}
}

// TestLostRollbackAnswer: the answer lost is that of a transaction that
// did not commit (a duplicate name: Postgres answers the INSERT with
// SQLSTATE 23505 and skips the rest of the batch, COMMIT included). With its transaction id known (a keyed write learns it with
// the key's claim) the write is found aborted: 503, nothing was written.
// Without it (an unkeyed create sends everything in one round trip) the
// outcome cannot be proved: 500 code 8, never 503.
func TestLostRollbackAnswer(t *testing.T) {
	e := setupProxied(t)
	if code, b := e.do(t, "POST", "/services", `{"name":"dup","host":"d.internal"}`); code != 201 {
		t.Fatalf("seed = %d %v", code, b)
	}
	rollbackTag := []byte("C23505\x00") // the error's SQLSTATE field
	lose := func(hdr ...string) (int, map[string]any) {
		lost := e.proxy.Lost()
		e.proxy.LoseReply(rollbackTag)
		code, b := e.do(t, "POST", "/services", `{"name":"dup","host":"other.internal"}`, hdr...)
		if e.proxy.Lost() != lost+1 {
			t.Fatalf("the proxy lost no ROLLBACK answer (got %d %v)", code, b)
		}
		return code, b
	}
	if code, b := lose("Idempotency-Key", "dup-1"); code != 503 || b["code"] != float64(8) || b["message"] != "database unavailable; nothing was written" {
		t.Errorf("keyed duplicate with its answer lost = %d %v, want 503 nothing was written", code, b)
	}
	code, b := lose()
	msg, _ := b["message"].(string)
	if code != 500 || b["code"] != float64(8) || !strings.Contains(msg, "unknown") || !strings.Contains(msg, "Idempotency-Key") {
		t.Errorf("unkeyed duplicate with its answer lost = %d %v, want 500 code 8 outcome unknown", code, b)
	}
	if n := e.truth(t, `SELECT count(*) FROM services`); n != 1 {
		t.Errorf("services = %d, want 1", n)
	}
	if n := e.truth(t, `SELECT count(*) FROM idempotency_keys`); n != 0 {
		t.Errorf("idempotency records = %d, want 0", n)
	}
}
