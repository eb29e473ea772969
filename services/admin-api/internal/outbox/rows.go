package outbox

import (
	"context"
	"database/sql"
	"errors"
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
// transaction needs is held: it writes the transaction's outbox rows and
// its one outbox_tx row, unnumbered (tx = 0), with one ordering key from
// outbox_seq (a sequence never blocks, so committing writers do not wait
// for each other). The transaction is numbered after its commit, by
// updating its outbox_tx row only (Number; see the package documentation).
const appendSQL = `WITH k AS MATERIALIZED (SELECT nextval('outbox_seq') AS seq),
	i AS (INSERT INTO outbox_rows (batch, seq, idx, cnt, key, op, type, entity_id, entity)
		SELECT $1::uuid, k.seq, u.n - 1, $2::int, u.key, u.op, u.type, u.entity_id, u.entity
		FROM k, unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[])
			WITH ORDINALITY AS u(key, op, type, entity_id, entity, n)
		RETURNING id),
	t AS (INSERT INTO outbox_tx (seq, batch, first, cnt)
		SELECT k.seq, $1::uuid, (SELECT min(id) FROM i), (SELECT count(*) FROM i) FROM k
		RETURNING first, cnt)
	SELECT first, cnt FROM t`

// QueueAppend queues on b the statement that writes cs (in order) as the
// outbox rows of one transaction, marked with batch (a UUID) so that
// Committed can find them. It must be the transaction's last statement
// before COMMIT. ScanAppend reads its answer.
func QueueAppend(b *pgx.Batch, batch string, cs []Change) {
	n := len(cs)
	keys, kinds, types, ids := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	ents := make([][]byte, n)
	for i, c := range cs {
		keys[i], kinds[i], types[i], ids[i], ents[i] = wire.Key(c.Type, c.ID), string(c.Op), c.Type, c.ID, c.Entity
	}
	b.Queue(appendSQL, batch, n, keys, kinds, types, ids, ents)
}

// ScanAppend reads the answer of QueueAppend's statement: the id of the
// transaction's first outbox row (what Numberer.Wait asks for) and how
// many rows were written.
func ScanAppend(r pgx.Row) (first int64, n int, err error) {
	err = r.Scan(&first, &n)
	return first, n, err
}

// Committed returns the id of the first outbox row of batch and the
// transaction's number (0: not numbered yet); ok is false when none are
// in Postgres (which proves nothing: their transaction may still run).
func Committed(ctx context.Context, db *sql.DB, batch string) (first int64, tx uint64, ok bool, err error) {
	err = db.QueryRowContext(ctx, `SELECT first, tx FROM outbox_tx WHERE batch = $1::uuid`, batch).Scan(&first, &tx)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	return first, tx, true, nil
}

// Status is the relay's progress.
type Status struct {
	Backlog       int64      `json:"backlog"` // rows not published yet, numbered or not
	LastTx        uint64     `json:"last_tx"` // the last number given
	PublishedTx   uint64     `json:"last_published_tx"`
	LastPublished *time.Time `json:"last_published_at"`
}

// ReadStatus reports the outbox backlog and the last published
// transaction.
func ReadStatus(ctx context.Context, db *gorm.DB) (Status, error) {
	var st Status
	var row struct {
		Backlog     int64
		LastTx      uint64
		PublishedTx uint64
		PublishedAt sql.NullTime
	}
	err := db.WithContext(ctx).Raw(`SELECT
		(SELECT count(*) FROM outbox_rows WHERE published_at IS NULL) AS backlog,
		(SELECT tx FROM outbox_counter) AS last_tx,
		r.published_tx, r.published_at FROM relay_state r`).Scan(&row).Error
	if err != nil {
		return st, err
	}
	st = Status{Backlog: row.Backlog, LastTx: row.LastTx, PublishedTx: row.PublishedTx}
	if row.PublishedAt.Valid {
		t := row.PublishedAt.Time
		st.LastPublished = &t
	}
	return st, nil
}
