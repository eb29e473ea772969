//go:build integration

package store_test

import (
	"fmt"
	"strings"
	"sync"
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

// waitBlocked waits until some backend of the test's database waits for a
// lock (a row lock held by another transaction).
func waitBlocked(t *testing.T, db *gorm.DB) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "a transaction waiting for a row lock", func() bool {
		var n int64
		db.Raw(`SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
			WHERE NOT l.granted AND a.datname = current_database()`).Scan(&n)
		return n > 0
	})
}

// lastEvent returns the number and entity of the last outbox row of the
// entity with key k.
func lastEvent(t *testing.T, db *gorm.DB, k string) (uint64, string) {
	t.Helper()
	var row struct {
		Tx     uint64
		Entity string
	}
	if err := db.Raw(`SELECT tx, convert_from(entity, 'UTF8') AS entity FROM outbox WHERE key = ? ORDER BY tx DESC, idx DESC LIMIT 1`, k).Scan(&row).Error; err != nil {
		t.Fatal(err)
	}
	return row.Tx, row.Entity
}

// gapFree checks that the outbox's transactions are numbered exactly
// 1..n, each number one transaction (one batch), and that the counter is
// at n.
func gapFree(t *testing.T, db *gorm.DB, n int) {
	t.Helper()
	var rows []struct {
		Tx      uint64
		Batches int
	}
	if err := db.Raw(`SELECT tx, count(DISTINCT batch) AS batches FROM outbox GROUP BY tx ORDER BY tx`).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if len(rows) != n {
		t.Fatalf("%d transaction numbers in the outbox, want %d: %+v", len(rows), n, rows)
	}
	for i, r := range rows {
		if r.Tx != uint64(i+1) || r.Batches != 1 {
			t.Fatalf("number %d: tx %d with %d batches; want tx %d, one batch (no gap, no number given twice)", i, r.Tx, r.Batches, i+1)
		}
	}
	var counter uint64
	db.Raw(`SELECT tx FROM outbox_counter`).Scan(&counter)
	if counter != uint64(n) {
		t.Fatalf("outbox_counter = %d, want %d", counter, n)
	}
}

// TestConflictingWritesNumberedInCommitOrder: two writers update the same
// service; the second to lock it waits for the first to commit and must
// get the higher number, whichever began first. (A scheme that takes the
// ordering key before the transaction's locks, at BEGIN say, fails the
// first case: the writer that began first commits last.)
func TestConflictingWritesNumberedInCommitOrder(t *testing.T) {
	for _, c := range []struct {
		name           string
		lastBeganFirst bool
	}{{"the writer that began first commits last", true}, {"the writer that began last commits last", false}} {
		t.Run(c.name, func(t *testing.T) {
			st, db := open(t)
			ctx := t.Context()
			x := service("x")
			if _, err := st.Write(ctx, func(tx *store.Tx) error { _, err := tx.Insert(ctx, entity.Service, x); return err }); err != nil {
				t.Fatal(err)
			}
			update := func(tx *store.Tx, retries int) error {
				e, err := tx.Get(ctx, entity.Service, "x", true)
				if err != nil {
					return err
				}
				e["retries"] = float64(retries)
				_, err = tx.Update(ctx, entity.Service, e)
				return err
			}
			began := make(chan struct{})   // the second writer began
			locked := make(chan struct{})  // the first writer holds x
			var first, second store.Result // by commit order
			var err1, err2 error
			var wg sync.WaitGroup
			// The second writer to commit: it locks x after the first.
			wg.Go(func() {
				second, err2 = st.Write(ctx, func(tx *store.Tx) error {
					if c.lastBeganFirst {
						// Begin: a statement reaches Postgres.
						if _, err := tx.Get(ctx, entity.Service, "x", false); err != nil {
							return err
						}
						close(began)
					}
					<-locked
					return update(tx, 2) // waits for the first writer's commit
				})
			})
			if c.lastBeganFirst {
				<-began
			}
			first, err1 = st.Write(ctx, func(tx *store.Tx) error {
				if _, err := tx.Get(ctx, entity.Service, "x", true); err != nil {
					return err
				}
				close(locked)
				waitBlocked(t, db)
				return update(tx, 1)
			})
			wg.Wait()
			if err1 != nil || err2 != nil {
				t.Fatalf("writes: %v, %v", err1, err2)
			}
			if first.Tx != 2 || second.Tx != 3 {
				t.Fatalf("numbers: first to commit %d, second %d; want 2, 3", first.Tx, second.Tx)
			}
			tx, body := lastEvent(t, db, wire.Key("services", x["id"].(string)))
			if tx != 3 {
				t.Errorf("last event of x has tx %d, want 3", tx)
			}
			var row string
			db.Raw(`SELECT body::text FROM services WHERE name = 'x'`).Scan(&row)
			e, _ := entity.Decode([]byte(row))
			want, _ := entity.Canonical(e)
			if body != string(want) || !strings.Contains(body, `"retries":2,`) {
				t.Errorf("the highest-numbered event of x is not what Postgres holds:\nevent %s\nrow   %s", body, want)
			}
			gapFree(t, db, 3)
		})
	}
}

// TestKeyTakenEarlierCommittedLaterIsNumberedNext: T1 takes its ordering
// key (its last statement) and stays open; T2 takes a later key, commits
// and is numbered 1; T1 commits: the next round gives it 2, and a write
// after it 3. Gap-free, nothing numbered twice, and nothing waits for T1.
func TestKeyTakenEarlierCommittedLaterIsNumberedNext(t *testing.T) {
	st, db := open(t)
	ctx := t.Context()
	sqlDB, _ := db.DB()
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var t1 *pgx.Conn
	_ = conn.Raw(func(dc any) error { t1 = dc.(*stdlib.Conn).Conn(); return nil })
	if _, err := t1.Exec(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	outbox.QueueAppend(b, uuid.NewString(), []outbox.Change{{Op: wire.OpDelete, Type: "services", ID: uuid.NewString()}})
	br := t1.SendBatch(ctx, b)
	first1, _, err := outbox.ScanAppend(br.QueryRow())
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	res2, err := insertService(ctx, st, "t2")
	if err != nil || res2.Tx != 1 {
		t.Fatalf("T2 = %+v, %v; want number 1 while T1 is open", res2, err)
	}
	if _, err := t1.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	res3, err := insertService(ctx, st, "t3")
	if err != nil || res3.Tx != 3 {
		t.Fatalf("T3 = %+v, %v; want number 3", res3, err)
	}
	var tx1 uint64
	db.Raw(`SELECT tx FROM outbox WHERE id = ?`, first1).Scan(&tx1)
	if tx1 != 2 {
		t.Fatalf("T1 numbered %d, want 2 (numbered by T3's round, before T3: lower key)", tx1)
	}
	gapFree(t, db, 3)
}

// TestReplicasNumberGapFree: writers on two stores with pools of their
// own (two admin-api replicas) commit concurrently, some failing: every
// committed transaction answers the number its rows carry, numbers are
// 1..n, and every service's highest-numbered event is what Postgres holds.
func TestReplicasNumberGapFree(t *testing.T) {
	st1, db := open(t)
	ctx := t.Context()
	st2 := store.New(db, entity.Types) // another replica: a Numberer of its own
	const workers, each, services = 8, 20, 4
	for i := range services {
		if _, err := insertService(ctx, st1, fmt.Sprintf("s%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	answered := map[uint64]int{}
	var wg sync.WaitGroup
	for w := range workers {
		st := st1
		if w%2 == 1 {
			st = st2
		}
		wg.Go(func() {
			for j := range each {
				res, err := st.Write(ctx, func(tx *store.Tx) error {
					if j%5 == 4 {
						_, err := tx.Insert(ctx, entity.Service, service("s0")) // a unique violation: no number
						return err
					}
					e, err := tx.Get(ctx, entity.Service, fmt.Sprintf("s%d", (w+j)%services), true)
					if err != nil {
						return err
					}
					e["retries"] = float64(w*100 + j)
					_, err = tx.Update(ctx, entity.Service, e)
					return err
				})
				if err != nil {
					continue
				}
				mu.Lock()
				answered[res.Tx]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	n := services + len(answered)
	gapFree(t, db, n)
	for tx, k := range answered {
		if k != 1 || tx <= services || tx > uint64(n) {
			t.Fatalf("number %d answered %d times", tx, k)
		}
	}
	var rows []struct{ ID, Body string }
	db.Raw(`SELECT id::text AS id, body::text AS body FROM services`).Scan(&rows)
	for _, r := range rows {
		_, ev := lastEvent(t, db, wire.Key("services", r.ID))
		e, _ := entity.Decode([]byte(r.Body))
		want, _ := entity.Canonical(e)
		if ev != string(want) {
			t.Errorf("service %s: the highest-numbered event is not what Postgres holds:\nevent %s\nrow   %s", r.ID, ev, want)
		}
	}
}

// TestRoundUpdatesOneRowPerTransaction: numbering a committed transaction
// of many changes leaves its outbox rows untouched (same tuple, same ctid)
// and gives all of them its number: a round costs one row per transaction,
// not one per change (a round numbering a 1M-entity import used to update
// 1M rows while every other writer waited for its number).
func TestRoundUpdatesOneRowPerTransaction(t *testing.T) {
	_, db := open(t)
	ctx := t.Context()
	sqlDB, _ := db.DB()
	const n = 2000
	cs := make([]outbox.Change, n)
	for i := range cs {
		cs[i] = outbox.Change{Op: wire.OpDelete, Type: "services", ID: uuid.NewString()}
	}
	batch := uuid.NewString()
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var pc *pgx.Conn
	_ = conn.Raw(func(dc any) error { pc = dc.(*stdlib.Conn).Conn(); return nil })
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	outbox.QueueAppend(b, batch, cs)
	b.Queue(`COMMIT`)
	if err := pc.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	tuples := func() string {
		var s string
		if err := pc.QueryRow(ctx, `SELECT string_agg(ctid::text, ',' ORDER BY id) FROM outbox_rows WHERE batch = $1`, batch).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := tuples()
	if _, last, err := outbox.Number(ctx, pc, nil); err != nil || last != 1 {
		t.Fatalf("round: last %d, %v; want 1", last, err)
	}
	if after := tuples(); after != before {
		t.Errorf("the round rewrote the transaction's %d outbox rows (ctids changed); want them untouched", n)
	}
	var got struct{ Rows, Tx int64 }
	db.Raw(`SELECT count(*) AS rows, max(tx) AS tx FROM outbox WHERE batch = ? AND tx = 1`, batch).Scan(&got)
	if got.Rows != n || got.Tx != 1 {
		t.Errorf("rows numbered 1 = %d (tx %d), want %d", got.Rows, got.Tx, n)
	}
}
