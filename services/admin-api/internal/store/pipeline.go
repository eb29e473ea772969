package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

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

// guarded returns o rewritten so that Postgres itself refuses what o's
// check refuses, when o is an UPDATE or DELETE whose check only refuses
// zero rows (ok false otherwise): the statement then fails with
// division_by_zero when it changes no row, which aborts the transaction
// (the COMMIT pipelined after it rolls back instead), and its result reads
// as o's check's error. So it can share the round trip of COMMIT instead
// of going first on its own, with the transaction's row locks held.
func (o op) guarded() (op, bool) {
	if o.check == nil || o.row != nil {
		return o, false
	}
	verb, _, _ := strings.Cut(o.sql, " ")
	if (verb != "UPDATE" && verb != "DELETE") || strings.Contains(strings.ToUpper(o.sql), "RETURNING") {
		return o, false
	}
	// The check is a function of the row count: find out which counts it
	// refuses.
	tag := func(n int) pgconn.CommandTag { return pgconn.NewCommandTag(fmt.Sprintf("%s %d", verb, n)) }
	none := o.check(tag(0))
	if none == nil || o.check(tag(1)) != nil || o.check(tag(2)) != nil || o.check(tag(1000)) != nil {
		return o, false
	}
	g := o
	g.sql = `WITH w AS (` + o.sql + ` RETURNING 1) SELECT 1 / count(*)::int FROM w`
	g.check = nil
	fix := o.fix
	g.fix = func(err error) error {
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "22012" {
			return none
		}
		if fix != nil {
			return fix(err)
		}
		return err
	}
	return g, true
}
