//go:build integration

package store_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/outbox"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"
)

// withConn runs fn on one pgx connection of db (as the relay leader's).
func withConn(t *testing.T, db *gorm.DB, fn func(c *pgx.Conn) error) {
	t.Helper()
	sqlDB, _ := db.DB()
	c, err := sqlDB.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Raw(func(dc any) error { return fn(dc.(*stdlib.Conn).Conn()) }); err != nil {
		t.Fatal(err)
	}
}

// numbers numbers every committed transaction (as the relay leader does
// before publishing) and returns the number of each service's change by
// service name.
func numbers(t *testing.T, db *gorm.DB) map[string]uint64 {
	t.Helper()
	withConn(t, db, func(c *pgx.Conn) error {
		_, _, err := outbox.Number(t.Context(), c, 1000)
		return err
	})
	var rows []struct {
		Name string
		Tx   uint64
	}
	if err := db.Raw(`SELECT convert_from(entity, 'UTF8')::jsonb->>'name' AS name, tx FROM outbox WHERE type = 'services'`).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, r := range rows {
		out[r.Name] = r.Tx
	}
	return out
}

// openAtKey begins a transaction on its own connection that writes svc
// (inserts it, or updates it when update is set) and its outbox row and
// takes its ordering key (a write's last statement before COMMIT), then
// leaves it open; commit ends it.
func openAtKey(t *testing.T, dsn string, svc map[string]any, update bool) (ord uint64, commit func()) {
	t.Helper()
	ctx := t.Context()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	body, _ := json.Marshal(svc)
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	if update {
		b.Queue(`UPDATE services SET body = $3 WHERE id = $1 AND name = $2`, svc["id"], svc["name"], body)
	} else {
		b.Queue(`INSERT INTO services (id, name, body) VALUES ($1, $2, $3)`, svc["id"], svc["name"], body)
	}
	outbox.QueueAppend(b, uuid.NewString(), []outbox.Change{{Op: wire.OpUpsert, Type: entity.Service.Name, ID: svc["id"].(string), Entity: body}})
	br := c.SendBatch(ctx, b)
	for range 2 {
		if tag, err := br.Exec(); err != nil || tag.RowsAffected() == 0 && tag.String() != "BEGIN" {
			t.Fatal(tag, err)
		}
	}
	ord, n, err := outbox.ScanAppend(br.QueryRow())
	if err != nil || n != 1 {
		t.Fatalf("append: %d rows, %v", n, err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	return ord, func() {
		if _, err := c.Exec(ctx, `COMMIT`); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEarlierKeyCommittedLaterIsNumberedLater holds transaction A open after
// it took its ordering key; B takes a later key and commits; the relay
// numbers B (A is not visible); A commits and is numbered after B. That is
// safe because they cannot conflict: A held every lock it needed before it
// took its key, and B took its later key (so finished its statements)
// while A was open, so B neither waited for A nor read what A wrote, and A
// could not have read B. A transaction that does conflict waits for A's
// commit and so takes its key (and its number) after A's: the second half.
func TestEarlierKeyCommittedLaterIsNumberedLater(t *testing.T) {
	dsn := testenv.Database(t)
	st, db := openDSN(t, dsn)
	ctx := t.Context()

	a := service("a")
	ordA, commitA := openAtKey(t, dsn, a, false)
	resB, err := st.Write(ctx, func(tx *store.Tx) error {
		_, err := tx.Insert(ctx, entity.Service, service("b"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if resB.Order <= ordA {
		t.Fatalf("ordering keys: A %d, B %d; want A's first", ordA, resB.Order)
	}
	if got := numbers(t, db); got["b"] != 1 || got["a"] != 0 {
		t.Fatalf("numbers while A is open = %v; want b 1 and a unnumbered", got)
	}
	commitA()
	if got := numbers(t, db); got["b"] != 1 || got["a"] != 2 {
		t.Fatalf("numbers after A committed = %v; want b 1, a 2 (the order they became visible)", got)
	}

	// C updates service a, takes its key and stays open; D updates a too,
	// so it waits for C's row lock, and takes its key after C committed.
	c := map[string]any{}
	for k, v := range a {
		c[k] = v
	}
	c["host"] = "c.internal"
	ordC, commitC := openAtKey(t, dsn, c, true)
	dDone := make(chan struct{})
	var resD store.Result
	var errD error
	go func() {
		defer close(dDone)
		resD, errD = st.Write(ctx, func(tx *store.Tx) error {
			upd := service("a")
			upd["id"], upd["host"] = a["id"], "d.internal"
			_, err := tx.Update(ctx, entity.Service, upd)
			return err
		})
	}()
	testenv.Eventually(t, 20*time.Second, "D waits for C's row lock", func() bool {
		select {
		case <-dDone:
			t.Fatalf("D ended while C holds the row: %+v, %v", resD, errD)
		default:
		}
		var n int64
		db.Raw(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return n == 1
	})
	commitC()
	<-dDone
	if errD != nil {
		t.Fatal(errD)
	}
	if resD.Order <= ordC {
		t.Fatalf("ordering keys: C %d, D (waited for C) %d; want C's first", ordC, resD.Order)
	}
	var txs []uint64
	numbers(t, db)
	if err := db.Raw(`SELECT tx FROM outbox WHERE entity_id = ? ORDER BY id`, c["id"]).Scan(&txs).Error; err != nil {
		t.Fatal(err)
	}
	if len(txs) != 3 || txs[0] != 2 || txs[1] != 3 || txs[2] != 4 {
		t.Fatalf("numbers of service a's changes (A, C, D) = %v; want 2, 3, 4", txs)
	}
}
