package store

import (
	"context"
	"database/sql"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/outbox"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// Tx is one admin transaction.
type Tx struct {
	s       *Store
	db      *gorm.DB // runs on conn, sending pending first
	conn    *sql.Conn
	pending pipeline // statements not sent yet (BEGIN first)
	err     error    // the error of a failed pending statement
	changes []outbox.Change
	idem    *Idempotency
	// xid is the transaction's id (pg_current_xact_id), learned with the
	// first round trip that reaches Postgres; with batch (the outbox rows'
	// batch id) it lets Write find out whether a COMMIT whose answer was
	// lost committed.
	xid      string
	xidAsked bool
	batch    string
}

// xidOp asks for the transaction's id; it rides in the transaction's first
// round trip (no round trip of its own).
func (tx *Tx) xidOp() op {
	tx.xidAsked = true
	return op{table: "transaction", sql: `SELECT pg_current_xact_id()::text`, row: func(r pgx.Row) error { return r.Scan(&tx.xid) }}
}

// txConn is the gorm connection of a transaction: each statement first
// sends the pending ones.
type txConn struct{ tx *Tx }

func (c txConn) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	if err := c.tx.flush(ctx); err != nil {
		return nil, err
	}
	return c.tx.conn.PrepareContext(ctx, q)
}

func (c txConn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if err := c.tx.flush(ctx); err != nil {
		return nil, err
	}
	return c.tx.conn.ExecContext(ctx, q, args...)
}

func (c txConn) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if err := c.tx.flush(ctx); err != nil {
		return nil, err
	}
	return c.tx.conn.QueryContext(ctx, q, args...)
}

// QueryRowContext after a failed flush runs q in the aborted transaction,
// which fails; Write reports the flush's error.
func (c txConn) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	_ = c.tx.flush(ctx)
	return c.tx.conn.QueryRowContext(ctx, q, args...)
}

// flush sends the pending statements.
func (tx *Tx) flush(ctx context.Context) error {
	if tx.err != nil {
		return tx.err
	}
	if len(tx.pending) == 0 {
		return nil
	}
	ops := tx.pending
	tx.pending = nil
	if !tx.xidAsked {
		ops = append(ops, tx.xidOp())
	}
	err := tx.conn.Raw(func(dc any) error {
		pc, err := pgxConn(dc)
		if err != nil {
			return err
		}
		return ops.send(ctx, pc)
	})
	if err != nil {
		tx.err = err
	}
	return err
}

func (tx *Tx) record(op wire.Op, t *entity.Type, id string, body []byte) {
	tx.changes = append(tx.changes, outbox.Change{Op: op, Type: t.Name, ID: id, Entity: body})
}
