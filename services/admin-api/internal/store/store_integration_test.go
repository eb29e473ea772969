//go:build integration

package store_test

import (
	"context"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/database"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
	"github.com/google/uuid"
	"gorm.io/gorm"
)

func open(t *testing.T) (*store.Store, *gorm.DB) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db := testenv.OpenDatabase(t, testenv.Database(t), log)
	// Migrating twice is a no-op.
	if err := database.Migrate(t.Context(), db, log); err != nil {
		t.Fatal(err)
	}
	return store.New(db, entity.Types), db
}

func service(name string) map[string]any {
	e, errs := entity.Normalize(entity.Service, map[string]any{"name": name, "host": name + ".internal"}, nil,
		map[string]any{"id": uuid.NewString(), "created_at": int64(1), "updated_at": int64(1)})
	if errs != nil {
		panic(errs)
	}
	return e
}

// insertService writes one service named name in a transaction of its own.
func insertService(ctx context.Context, st *store.Store, name string) (store.Result, error) {
	return st.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.Insert(ctx, entity.Service, service(name))
		return err
	})
}

// TestTxNumbersFollowCommitOrder starts transaction A, lets B start, write
// and commit while A is still open, then commits A: B must get number 1 and
// A number 2, whatever order they began in.
func TestTxNumbersFollowCommitOrder(t *testing.T) {
	st, db := open(t)
	ctx := t.Context()
	aWrote := make(chan struct{})
	bDone := make(chan struct{})
	var resA, resB store.Result
	var errA, errB error
	go func() {
		defer close(bDone)
		<-aWrote
		resB, errB = insertService(ctx, st, "b")
	}()
	resA, errA = st.Write(ctx, func(tx *store.Tx) error {
		if _, err := tx.Insert(ctx, entity.Service, service("a")); err != nil {
			return err
		}
		// A read sends the pending insert: A is open in Postgres and sees
		// its own row.
		if _, err := tx.Get(ctx, entity.Service, "a", false); err != nil {
			return err
		}
		close(aWrote)
		<-bDone // B commits while A is open
		return nil
	})
	if errA != nil || errB != nil {
		t.Fatalf("writes: %v, %v", errA, errB)
	}
	if resB.Tx != 1 || resA.Tx != 2 {
		t.Fatalf("tx numbers: B (committed first) = %d, A = %d; want 1, 2", resB.Tx, resA.Tx)
	}
	var n int64
	db.Raw(`SELECT count(*) FROM outbox WHERE tx = 0`).Scan(&n)
	if n != 0 {
		t.Errorf("%d outbox rows without a number", n)
	}
}

func TestRollbackGivesNumberBackAndWritesNothing(t *testing.T) {
	st, db := open(t)
	ctx := t.Context()
	if _, err := insertService(ctx, st, "one"); err != nil {
		t.Fatal(err)
	}
	_, err := st.Write(ctx, func(tx *store.Tx) error {
		if _, err := tx.Insert(ctx, entity.Service, service("two")); err != nil {
			return err
		}
		_, err := tx.Insert(ctx, entity.Service, service("one")) // duplicate name
		return err
	})
	var ue *store.UniqueError
	if !errorsAs(err, &ue) || ue.Fields["name"] != "one" {
		t.Fatalf("err = %v, want a unique violation on name", err)
	}
	res, err := insertService(ctx, st, "three")
	if err != nil || res.Tx != 2 {
		t.Fatalf("next write = %+v, %v; want tx 2", res, err)
	}
	var n int64
	db.Raw(`SELECT count(*) FROM services WHERE name = 'two'`).Scan(&n)
	if n != 0 {
		t.Error("a rolled-back row is visible")
	}
	db.Raw(`SELECT count(*) FROM outbox`).Scan(&n)
	if n != 2 {
		t.Errorf("outbox rows = %d, want 2", n)
	}
}

func TestUnavailableDatabase(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dsn := testenv.Database(t)
	u, _ := url.Parse(dsn)
	proxy := testenv.NewProxy(t, u.Host)
	db := testenv.OpenDatabase(t, proxy.DSN(t, dsn), log)
	st := store.New(db, entity.Types)
	ctx := t.Context()
	proxy.Cut()
	_, err := insertService(ctx, st, "x")
	if !errorsIs(err, store.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	proxy.Restore()
	res, err := insertService(ctx, st, "x")
	if err != nil || res.Tx != 1 {
		t.Fatalf("write after recovery = %+v, %v; want tx 1", res, err)
	}
}

// TestNoSilentCascade: Postgres refuses to drop a child behind the
// application's back; Tx.Delete deletes it with its own event.
func TestNoSilentCascade(t *testing.T) {
	st, db := open(t)
	ctx := t.Context()
	keep := func() map[string]any {
		return map[string]any{"id": uuid.NewString(), "created_at": int64(1), "updated_at": int64(1)}
	}
	cons, errs := entity.Normalize(entity.Consumer, map[string]any{"username": "u"}, nil, keep())
	if errs != nil {
		t.Fatal(errs)
	}
	cred, errs := entity.Normalize(entity.KeyAuth, map[string]any{"consumer": map[string]any{"id": cons["id"]}}, nil, keep())
	if errs != nil {
		t.Fatal(errs)
	}
	if _, err := st.Write(ctx, func(tx *store.Tx) error {
		if _, err := tx.Insert(ctx, entity.Consumer, cons); err != nil {
			return err
		}
		_, err := tx.Insert(ctx, entity.KeyAuth, cred)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`DELETE FROM consumers`).Error; err == nil {
		t.Fatal("a raw delete of a consumer with a credential succeeded")
	}
	res, err := st.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.Delete(ctx, entity.Consumer, cons["id"].(string))
		return err
	})
	if err != nil || res.Changes != 2 {
		t.Fatalf("delete = %+v, %v; want 2 changes (credential, consumer)", res, err)
	}
}

// TestPipelinedStatementErrors: Insert and Update are sent with the next
// statement or the commit; their errors still reach the caller, and a
// failed write leaves no row, no outbox row and no used number.
func TestPipelinedStatementErrors(t *testing.T) {
	st, db := open(t)
	ctx := t.Context()
	if _, err := insertService(ctx, st, "dup"); err != nil {
		t.Fatal(err)
	}
	var ue *store.UniqueError
	tests := []struct {
		name string
		fn   func(tx *store.Tx) error
		want func(error) bool
	}{
		{"error at the next statement", func(tx *store.Tx) error {
			if _, err := tx.Insert(ctx, entity.Service, service("dup")); err != nil {
				return err
			}
			_, err := tx.Get(ctx, entity.Service, "dup", false)
			if !errorsAs(err, &ue) {
				t.Errorf("Get after a failed insert = %v, want the unique violation", err)
			}
			return err
		}, func(err error) bool { return errorsAs(err, &ue) && ue.Fields["name"] == "dup" }},
		{"error at commit", func(tx *store.Tx) error {
			if _, err := tx.Insert(ctx, entity.Service, service("fresh")); err != nil {
				return err
			}
			_, err := tx.Insert(ctx, entity.Service, service("dup"))
			return err
		}, func(err error) bool { return errorsAs(err, &ue) && ue.Fields["name"] == "dup" }},
		{"update of a missing entity", func(tx *store.Tx) error {
			_, err := tx.Update(ctx, entity.Service, service("missing"))
			return err
		}, func(err error) bool { return errorsIs(err, store.ErrNotFound) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := st.Write(ctx, tc.fn)
			if !tc.want(err) {
				t.Fatalf("Write = %v", err)
			}
		})
	}
	var n int64
	db.Raw(`SELECT count(*) FROM services`).Scan(&n)
	if n != 1 {
		t.Errorf("services = %d, want 1 (failed writes leave nothing)", n)
	}
	res, err := insertService(ctx, st, "next")
	if err != nil || res.Tx != 2 {
		t.Fatalf("next write = %+v, %v; want tx 2", res, err)
	}
	db.Raw(`SELECT count(*) FROM outbox`).Scan(&n)
	if n != 2 {
		t.Errorf("outbox rows = %d, want 2", n)
	}
}

// TestExpireIdempotency: records of keyed writes older than the retention
// are deleted, younger ones stay.
func TestExpireIdempotency(t *testing.T) {
	st, db := open(t)
	if err := db.Exec(`INSERT INTO idempotency_keys (key, request_hash, status, response, created_at) VALUES
		('old', 'h', 201, '', now() - interval '2 hours'), ('young', 'h', 201, '', now())`).Error; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		st.ExpireIdempotency(ctx, time.Hour, 50*time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() { cancel(); <-done }()
	testenv.Eventually(t, 20*time.Second, "the old record deleted", func() bool {
		var keys []string
		db.Raw(`SELECT key FROM idempotency_keys ORDER BY key`).Scan(&keys)
		return len(keys) == 1 && keys[0] == "young"
	})
}
