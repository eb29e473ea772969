package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// op is one statement of a pipeline.
type op struct {
	table string // for error translation
	sql   string // with $n placeholders
	args  []any
	check func(pgconn.CommandTag) error // optional
	fix   func(error) error             // optional: adjusts the translated error
	row   func(pgx.Row) error           // optional: reads the statement's one row
}

// pipeline is a run of statements that go to Postgres in one round trip
// (a pgx batch, underneath gorm): queue them on a batch, send it, read the
// results in order. Reading stops at the first failed statement (which
// aborts the transaction: the later ones fail too) and returns its error
// translated for its table.
type pipeline []op

// queue appends the statements to b.
func (p pipeline) queue(b *pgx.Batch) {
	for _, o := range p {
		b.Queue(o.sql, o.args...)
	}
}

// read reads the results of the statements from br, in order.
func (p pipeline) read(br pgx.BatchResults) error {
	for _, o := range p {
		if o.row != nil {
			if err := o.row(br.QueryRow()); err != nil {
				return translate(o.table, err)
			}
			continue
		}
		tag, err := br.Exec()
		if err != nil {
			err = translate(o.table, err)
			if o.fix != nil {
				err = o.fix(err)
			}
			return err
		}
		if o.check != nil {
			if err := o.check(tag); err != nil {
				return err
			}
		}
	}
	return nil
}

// send runs the pipeline on conn in one round trip.
func (p pipeline) send(ctx context.Context, conn *pgx.Conn) error {
	b := &pgx.Batch{}
	p.queue(b)
	br := conn.SendBatch(ctx, b)
	err := p.read(br)
	if cerr := br.Close(); err == nil && cerr != nil {
		err = translate("transaction", cerr)
	}
	return err
}

// pgxConn is the pgx connection under a database/sql driver connection.
func pgxConn(dc any) (*pgx.Conn, error) {
	sc, ok := dc.(*stdlib.Conn)
	if !ok {
		return nil, fmt.Errorf("store: unexpected driver connection %T", dc)
	}
	return sc.Conn(), nil
}
