package outbox

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// This file holds the outbox's SQL on the writers' side: the statement a
// write ends with, the lookup of a write's rows and the relay's progress.

// Change is one changed entity of a write: one outbox row, one cp.changes
// record.
type Change struct {
	Op     wire.Op
	Type   string
	ID     string
	Entity []byte // canonical JSON; nil on delete
}

// appendSQL is the last statement of a write, sent when every lock the
// transaction needs is held: it writes the transaction's outbox rows
// unnumbered (tx = 0) with one ordering key from outbox_order (a sequence:
// it never blocks and is not rolled back) and wakes the relay, which
// numbers committed transactions in key order (Number). The NOTIFY is sent
// after COMMIT, on its own (see notifySQL): inside the transaction it would
// take Postgres's notification queue lock at commit and hold it through
// the WAL flush, serializing committers as the old counter did.
const appendSQL = `WITH k AS MATERIALIZED (SELECT nextval('outbox_order') AS ord),
	i AS (INSERT INTO outbox (batch, tx, ord, idx, cnt, key, op, type, entity_id, entity)
		SELECT $1::uuid, 0, k.ord, u.n - 1, $2::int, u.key, u.op, u.type, u.entity_id, u.entity
		FROM k, unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[])
			WITH ORDINALITY AS u(key, op, type, entity_id, entity, n)
		RETURNING 1)
	SELECT k.ord, (SELECT count(*) FROM i) AS n FROM k`

// notifySQL wakes the relay after a write committed. It runs in its own
// implicit transaction (after COMMIT in the same round trip) with an
// asynchronous commit: it is only a hint (the relay also polls), so it
// need not wait for a WAL flush while it holds the notification lock.
const notifySQL = `SELECT set_config('synchronous_commit', 'off', true), pg_notify('outbox', $1::text)`

// QueueAppend queues on b the statement that writes cs (in order) as the
// outbox rows of one transaction, marked with batch (a UUID) so that
// CommittedTx can find them. ScanAppend reads its answer. It must be the
// last statement before COMMIT.
func QueueAppend(b *pgx.Batch, batch string, cs []Change) {
	n := len(cs)
	keys, kinds, types, ids := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	ents := make([][]byte, n)
	for i, c := range cs {
		keys[i], kinds[i], types[i], ids[i], ents[i] = wire.Key(c.Type, c.ID), string(c.Op), c.Type, c.ID, c.Entity
	}
	b.Queue(appendSQL, batch, n, keys, kinds, types, ids, ents)
}

// ScanAppend reads the answer of QueueAppend's statement: the ordering
// key taken and how many rows were written.
func ScanAppend(r pgx.Row) (ord uint64, n int, err error) {
	err = r.Scan(&ord, &n)
	return ord, n, err
}

// QueueNotify queues on b, after COMMIT, the wake-up of the relay for the
// transaction whose outbox rows are marked with batch. Its error (it is a
// hint) is not the write's: read it with ReadNotify.
func QueueNotify(b *pgx.Batch, batch string) {
	b.Queue(notifySQL, batch)
}

// ReadNotify reads the answer of QueueNotify's statement.
func ReadNotify(br pgx.BatchResults) error {
	_, err := br.Exec()
	return err
}

// Committed returns the ordering key of the outbox rows of batch; ok is
// false when none are in Postgres (which proves nothing: their transaction
// may still run). Their presence proves that the transaction committed;
// whether the relay has numbered it yet does not matter.
func Committed(ctx context.Context, db *sql.DB, batch string) (ord uint64, ok bool, err error) {
	var o sql.NullInt64
	if err := db.QueryRowContext(ctx, `SELECT max(ord) FROM outbox WHERE batch = $1::uuid`, batch).Scan(&o); err != nil {
		return 0, false, err
	}
	return uint64(o.Int64), o.Valid, nil
}

// numberSQL gives the committed, unnumbered transactions that this one
// statement sees (at most $1 of them; all rows of a transaction become
// visible at once) the next numbers after relay_state.numbered_tx, in
// ordering-key order, and persists the last. A transaction that commits
// after it with a smaller key is numbered by a later call, after these:
// that is safe because it cannot conflict with any of them (see the
// README, "Transaction numbers").
const numberSQL = `WITH s AS MATERIALIZED (SELECT numbered_tx FROM relay_state FOR UPDATE),
	p AS MATERIALIZED (SELECT DISTINCT ord, batch FROM outbox WHERE tx = 0 ORDER BY ord LIMIT $1),
	n AS MATERIALIZED (SELECT batch, (SELECT numbered_tx FROM s) + row_number() OVER (ORDER BY ord) AS tx FROM p),
	u AS (UPDATE outbox o SET tx = n.tx FROM n WHERE o.tx = 0 AND o.batch = n.batch RETURNING 1),
	r AS (UPDATE relay_state SET numbered_tx = numbered_tx + (SELECT count(*) FROM n) RETURNING numbered_tx)
	SELECT (SELECT numbered_tx FROM r), (SELECT count(*) FROM u),
		(SELECT coalesce(array_agg(batch::text), '{}') FROM n)`

// Number gives the next transaction numbers to at most limit committed,
// unnumbered transactions, in ordering-key order (one statement, so one
// snapshot, committed with the numbers before anything is published). It
// returns the batches of the transactions it numbered and the last number
// given. Only the relay leader calls it, on its leader connection.
func Number(ctx context.Context, conn *pgx.Conn, limit int) (batches []string, last uint64, err error) {
	var rows int64
	if err := conn.QueryRow(ctx, numberSQL, limit).Scan(&last, &rows, &batches); err != nil {
		return nil, 0, fmt.Errorf("number outbox transactions: %w", err)
	}
	return batches, last, nil
}

// Status is the relay's progress.
type Status struct {
	Backlog       int64      `json:"backlog"`
	LastTx        uint64     `json:"last_tx"` // the last number given
	Unnumbered    int64      `json:"unnumbered"`
	PublishedTx   uint64     `json:"last_published_tx"`
	LastPublished *time.Time `json:"last_published_at"`
}

// ReadStatus reports the outbox backlog and the last published
// transaction.
func ReadStatus(ctx context.Context, db *gorm.DB) (Status, error) {
	var st Status
	var row struct {
		Backlog     int64
		Unnumbered  int64
		LastTx      uint64
		PublishedTx uint64
		PublishedAt sql.NullTime
	}
	err := db.WithContext(ctx).Raw(`SELECT
		(SELECT count(*) FROM outbox WHERE published_at IS NULL) AS backlog,
		(SELECT count(DISTINCT ord) FROM outbox WHERE tx = 0) AS unnumbered,
		r.numbered_tx AS last_tx,
		r.published_tx, r.published_at FROM relay_state r`).Scan(&row).Error
	if err != nil {
		return st, err
	}
	st = Status{Backlog: row.Backlog, Unnumbered: row.Unnumbered, LastTx: row.LastTx, PublishedTx: row.PublishedTx}
	if row.PublishedAt.Valid {
		t := row.PublishedAt.Time
		st.LastPublished = &t
	}
	return st, nil
}
