package outbox

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// numberLock is the pg advisory lock key (transaction-scoped) that
// serializes numbering rounds across admin-api replicas.
const numberLock = 0x64706e756d // "dpnum"

// numberSQL gives the committed, unnumbered transactions that this one
// statement sees (one snapshot, taken after the round's numberLock was
// granted, so it sees every number given before) the next numbers after
// outbox_counter's, in seq order, and notifies the relay with the last
// one. It updates one outbox_tx row per transaction, however many outbox
// rows the transaction wrote. It answers no row when there was nothing to
// number.
const numberSQL = `WITH p AS MATERIALIZED (
		SELECT seq, row_number() OVER (ORDER BY seq) AS k FROM outbox_tx WHERE tx = 0),
	c AS (UPDATE outbox_counter SET tx = tx + (SELECT max(k) FROM p)
		WHERE EXISTS (SELECT 1 FROM p)
		RETURNING tx - (SELECT max(k) FROM p) AS base, tx AS last),
	u AS (UPDATE outbox_tx o SET tx = c.base + p.k FROM p, c WHERE o.seq = p.seq RETURNING 1)
	SELECT c.last, (SELECT count(*) FROM u), pg_notify('outbox', c.last::text)::text FROM c`

// Number runs one numbering round on conn, which must not be in a
// transaction: in one round trip, it takes numberLock, numbers every
// committed, unnumbered transaction (numberSQL), commits, and then reads
// the numbers of the transactions whose first outbox rows are ids (0 for
// one still unnumbered: a transaction that was not visible yet). last is
// the last number given by this round (0: it gave none).
func Number(ctx context.Context, conn *pgx.Conn, ids []int64) (got map[int64]uint64, last uint64, err error) {
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, int64(numberLock))
	b.Queue(numberSQL)
	b.Queue(`COMMIT`)
	if len(ids) > 0 {
		b.Queue(`SELECT r.id, t.tx FROM outbox_rows r JOIN outbox_tx t ON t.seq = r.seq WHERE r.id = ANY($1)`, ids)
	}
	br := conn.SendBatch(ctx, b)
	err = func() error {
		for range 2 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		for rows.Next() {
			var n int64
			if err := rows.Scan(&last, &n, nil); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		tag, err := br.Exec()
		if err != nil {
			return err
		}
		if tag.String() != "COMMIT" {
			return fmt.Errorf("numbering ended with %s", tag)
		}
		if len(ids) == 0 {
			return nil
		}
		rows, err = br.Query()
		if err != nil {
			return err
		}
		got = make(map[int64]uint64, len(ids))
		for rows.Next() {
			var id int64
			var tx uint64
			if err := rows.Scan(&id, &tx); err != nil {
				rows.Close()
				return err
			}
			got[id] = tx
		}
		rows.Close()
		return rows.Err()
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, 0, fmt.Errorf("number outbox transactions: %w", err)
	}
	return got, last, nil
}

// Numberer gives committed transactions their numbers for the writers of
// one process and tells each its number. Writers that wait together share
// a round (Number): while one round runs, the writers that committed
// meanwhile queue up for the next, so rounds, which are serialized, keep
// up with any number of writers (each round commits once, one WAL flush,
// however many transactions it numbers).
type Numberer struct {
	db *sql.DB
	// failFor is how long a waiter waits while rounds fail.
	failFor time.Duration

	mu      sync.Mutex
	running bool
	waiting map[int64][]waiter // first outbox row id -> waiters
}

type waiter struct {
	ch    chan uint64 // the number; 0: rounds failed for failFor
	since time.Time
}

// NewNumberer returns a Numberer that runs its rounds on db's connections.
// A writer waits as long as rounds succeed (a round updates one row per
// transaction it numbers, but may wait for Postgres under load),
// and gives up when rounds have failed for failFor since it began waiting.
func NewNumberer(db *sql.DB, failFor time.Duration) *Numberer {
	return &Numberer{db: db, failFor: failFor, waiting: map[int64][]waiter{}}
}

// ErrNotNumbered: the rounds failed (Postgres is unreachable) for the
// Numberer's failFor.
var ErrNotNumbered = errors.New("numbering rounds failed")

// Wait returns the number of the committed transaction whose first
// outbox row is id, numbering it (with every other committed one) if no
// round has yet. It gives up when ctx ends or rounds keep failing
// (ErrNotNumbered); the transaction is numbered all the same, by the next
// round of any replica or by the relay.
func (n *Numberer) Wait(ctx context.Context, id int64) (uint64, error) {
	w := waiter{ch: make(chan uint64, 1), since: time.Now()}
	n.mu.Lock()
	n.waiting[id] = append(n.waiting[id], w)
	if !n.running {
		n.running = true
		go n.loop()
	}
	n.mu.Unlock()
	select {
	case tx := <-w.ch:
		if tx == 0 {
			return 0, fmt.Errorf("transaction of outbox row %d: %w for %s", id, ErrNotNumbered, n.failFor)
		}
		return tx, nil
	case <-ctx.Done():
		n.mu.Lock()
		ws := n.waiting[id]
		for i := range ws {
			if ws[i].ch == w.ch {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(n.waiting, id)
		} else {
			n.waiting[id] = ws
		}
		n.mu.Unlock()
		select {
		case tx := <-w.ch: // answered meanwhile
			if tx != 0 {
				return tx, nil
			}
		default:
		}
		return 0, fmt.Errorf("transaction of outbox row %d not numbered: %w", id, ctx.Err())
	}
}

// loop runs rounds while writers wait, then ends.
func (n *Numberer) loop() {
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(20*time.Millisecond), backoff.WithMaxInterval(time.Second), backoff.WithMaxElapsedTime(0))
	for {
		n.mu.Lock()
		if len(n.waiting) == 0 {
			n.running = false
			n.mu.Unlock()
			return
		}
		ids := make([]int64, 0, len(n.waiting))
		for id := range n.waiting {
			ids = append(ids, id)
		}
		n.mu.Unlock()
		got, err := n.round(ids)
		n.mu.Lock()
		for id, tx := range got {
			if tx == 0 {
				continue
			}
			for _, w := range n.waiting[id] {
				w.ch <- tx
			}
			delete(n.waiting, id)
		}
		if err != nil {
			for id, ws := range n.waiting {
				keep := ws[:0]
				for _, w := range ws {
					if time.Since(w.since) > n.failFor {
						w.ch <- 0
					} else {
						keep = append(keep, w)
					}
				}
				if len(keep) == 0 {
					delete(n.waiting, id)
				} else {
					n.waiting[id] = keep
				}
			}
		}
		n.mu.Unlock()
		if err != nil {
			time.Sleep(b.NextBackOff())
		} else {
			b.Reset()
		}
	}
}

// roundTimeout bounds one round (a safety net: a round updates one row
// per transaction it numbers).
const roundTimeout = 10 * time.Minute

func (n *Numberer) round(ids []int64) (map[int64]uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), roundTimeout)
	defer cancel()
	conn, err := n.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var got map[int64]uint64
	err = conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("outbox: unexpected driver connection %T", dc)
		}
		pc := sc.Conn()
		got, _, err = Number(ctx, pc, ids)
		if err != nil && pc.PgConn().TxStatus() != 'I' {
			// Mid-round (the connection failed, or ctx ended): never
			// reuse the connection.
			return errors.Join(err, driver.ErrBadConn)
		}
		return err
	})
	return got, err
}
