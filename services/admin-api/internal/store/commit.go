package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/outbox"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
)

// Write runs fn in one Postgres transaction. The entity rows, one outbox
// row per change (in the order fn made them) and the idempotency record
// commit together; the last statement takes the transaction's ordering key
// (outbox.QueueAppend), and after COMMIT Write waits for the transaction's
// number (outbox.Numberer; NumberFor while rounds fail): see the outbox
// package for why numbers given after commit keep commit order.
//
// Durability comes with the number. A transaction that changed something
// commits without waiting for its WAL flush (synchronous_commit off); the
// numbering round that numbers it commits synchronously after it, and so
// flushes it too, in one WAL flush for every transaction the round
// numbers. Write answers only after that: an answered write is durable, as
// before, and pays one shared flush. (Between its commit and its round,
// about one flush, other sessions can read the write before it is durable;
// a Postgres crash in that window loses it, unanswered. The relay
// publishes only numbered rows, which are durable.) A transaction that
// changed nothing commits synchronously.
//
// The transaction runs on one pooled connection and saves round trips:
// BEGIN and the entity writes of Insert and Update wait to be pipelined
// with the next statement, and the end (the pending statements, with an
// Update's row-count check done by Postgres (op.guarded), the idempotency
// record, the statement that writes the outbox rows, COMMIT) goes to
// Postgres in one round trip. Nothing serializes committing
// writers. A single-entity create is one round trip, and its number one
// more (shared with the writers that committed meanwhile) on a connection
// of its own.
//
// When the connection fails after COMMIT was sent, Write resolves the
// outcome (see resolve): committed is success; aborted is ErrUnavailable
// (nothing was written); otherwise ErrOutcomeUnknown. ErrUnavailable is
// returned only when the transaction certainly did not commit. A committed
// write whose numbering rounds failed for NumberFor (Postgres failed right
// after the commit) is ErrOutcomeUnknown too: its durability is not known.
func (s *Store) Write(ctx context.Context, fn func(tx *Tx) error) (Result, error) {
	res, first, err := s.write(ctx, fn)
	if err != nil || first == 0 {
		return res, err
	}
	if res.Tx, err = s.numbers.Wait(context.WithoutCancel(ctx), first); err != nil {
		// Committed, but not known to be durable: Postgres failed after
		// the commit (see Write).
		return Result{}, fmt.Errorf("%w: committed, but its number (and so its durability) was not confirmed: %v", ErrOutcomeUnknown, err)
	}
	return res, nil
}

// NumberFor is how long Write waits for the number of a committed
// transaction while numbering rounds fail. A round that succeeds slowly
// (numbering a large import) is waited for.
const NumberFor = 5 * time.Second

// write runs the transaction of Write; first is the id of its first
// outbox row (0: it wrote none).
func (s *Store) write(ctx context.Context, fn func(tx *Tx) error) (Result, int64, error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return Result{}, 0, err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return Result{}, 0, translate("transaction", err)
	}
	committed := false
	defer func() {
		if !committed {
			rollback(conn)
		}
		conn.Close()
	}()
	tx := &Tx{s: s, conn: conn, pending: []op{{table: "transaction", sql: `BEGIN`}}}
	tx.db = s.db.Session(&gorm.Session{Context: ctx, NewDB: true})
	tx.db.Statement.ConnPool = txConn{tx}
	if err := fn(tx); err != nil {
		var pe *pgconn.PgError
		if tx.err != nil && errors.As(err, &pe) && pe.Code == "25P02" {
			// A statement after a failed pipelined one: report the cause.
			err = tx.err
		}
		return Result{}, 0, translateTx(err)
	}
	// A statement whose result is checked here (an update that must hit
	// its row) cannot share the round trip of COMMIT, unless Postgres can
	// check it (op.guarded): send the others first.
	for i, o := range tx.pending {
		if o.check == nil {
			continue
		}
		if g, ok := o.guarded(); ok {
			tx.pending[i] = g
			continue
		}
		_ = tx.flush(ctx)
		break
	}
	if tx.err != nil {
		return Result{}, 0, translateTx(tx.err)
	}
	var res Result
	var first int64
	var pid uint32
	err = conn.Raw(func(dc any) error {
		pc, err := pgxConn(dc)
		if err != nil {
			return err
		}
		pid = pc.PgConn().PID()
		res, first, err = commit(ctx, pc, tx)
		if st := pc.PgConn().TxStatus(); err != nil && st != 'I' && st != 'E' && st != 'T' {
			// The outcome is unknown (the connection failed mid-commit):
			// never reuse the connection.
			return errors.Join(err, driver.ErrBadConn)
		}
		return err
	})
	var lost *lostCommit
	if errors.As(err, &lost) {
		// COMMIT was sent and its answer did not arrive: find out.
		res, first, rerr := s.resolve(ctx, tx, pid)
		switch {
		case rerr == nil:
			committed = true
			return res, first, nil
		case errors.Is(rerr, errAborted):
			return Result{}, 0, fmt.Errorf("%w: %w (the transaction did not commit)", ErrUnavailable, lost.err)
		default:
			return Result{}, 0, fmt.Errorf("%w: %v; %v", ErrOutcomeUnknown, lost.err, rerr)
		}
	}
	if err != nil {
		return Result{}, 0, translateTx(err)
	}
	committed = true
	return res, first, nil
}

// lostCommit is a failure of the round trip that carried COMMIT that does
// not prove the transaction did not commit: the connection failed after
// the batch was (maybe partly) sent.
type lostCommit struct{ err error }

func (e *lostCommit) Error() string { return "connection lost at COMMIT: " + e.err.Error() }
func (e *lostCommit) Unwrap() error { return e.err }

// settledAbort reports whether err, from the round trip that carried
// COMMIT, proves that the transaction did not commit: nothing was sent, or
// the connection is still up, so Postgres answered every statement of the
// batch (an error aborts the transaction and the COMMIT that follows rolls
// back), or the batch failed while pgx prepared its statements (before
// sending any of them). A connection that failed after sending may have
// committed.
func settledAbort(conn *pgx.Conn, err error) bool {
	var pre pgx.ErrPreprocessingBatch
	return pgconn.SafeToRetry(err) || errors.As(err, &pre) || !conn.PgConn().IsClosed()
}

var errAborted = errors.New("the transaction aborted")

// ResolveFor bounds how long Write looks for the outcome of a COMMIT whose
// answer was lost.
const ResolveFor = 5 * time.Second

// resolve finds out, on a new connection, whether tx committed after the
// answer to its COMMIT was lost: by its transaction id (pg_xact_status)
// when the id arrived before the connection failed, else by its outbox
// rows (only their presence proves anything). It returns nil (committed,
// with the id of its first outbox row, 0 when it wrote none), errAborted,
// or why the outcome is still unknown after ResolveFor.
func (s *Store) resolve(ctx context.Context, tx *Tx, pid uint32) (Result, int64, error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return Result{}, 0, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ResolveFor)
	defer cancel()
	n := len(tx.changes)
	var res Result
	var first int64
	var last error
	check := func() error {
		if tx.xid != "" {
			var st sql.NullString
			if err := sqlDB.QueryRowContext(ctx, `SELECT pg_xact_status($1::text::xid8)`, tx.xid).Scan(&st); err != nil {
				last = err
				return err
			}
			switch st.String {
			case "aborted":
				return backoff.Permanent(errAborted)
			case "in progress":
				// Its backend still runs it (a half-open connection, a
				// COMMIT waiting for the WAL flush): end that backend, so
				// the transaction commits or aborts now.
				_, _ = sqlDB.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
					WHERE pid = $1 AND backend_xid::text = (($2::text::numeric) % 4294967296)::text`, int64(pid), tx.xid)
				last = errors.New("transaction " + tx.xid + " is still in progress")
				return last
			case "committed":
			default:
				return backoff.Permanent(fmt.Errorf("transaction %s has no status", tx.xid))
			}
			res = Result{Changes: n}
			if n > 0 {
				f, _, ok, err := outbox.Committed(ctx, sqlDB, tx.batch)
				if err != nil {
					last = err
					return err
				}
				if !ok {
					return backoff.Permanent(fmt.Errorf("transaction %s committed without its outbox rows", tx.xid))
				}
				first = f
			}
			return nil
		}
		if n == 0 {
			return backoff.Permanent(errors.New("no transaction id and no outbox rows to look for"))
		}
		// Without the id only the outbox rows can tell, and only that it
		// committed (absent rows may be of a transaction still running).
		f, _, ok, err := outbox.Committed(ctx, sqlDB, tx.batch)
		if err != nil {
			last = err
			return err
		}
		if !ok {
			last = errors.New("its outbox rows are not in Postgres")
			return last
		}
		res, first = Result{Changes: n}, f
		return nil
	}
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(50*time.Millisecond), backoff.WithMaxInterval(time.Second), backoff.WithMaxElapsedTime(0))
	err = backoff.Retry(check, backoff.WithContext(b, ctx))
	if err != nil && ctx.Err() != nil && last != nil {
		err = fmt.Errorf("gave up after %s: %w", ResolveFor, last)
	}
	return res, first, err
}

// commit sends the end of tx (its pending statements, the idempotency
// record, the outbox rows with their ordering key, COMMIT) as one
// pipelined batch. first is the id of the transaction's first outbox row
// (0: it wrote none).
func commit(ctx context.Context, conn *pgx.Conn, tx *Tx) (Result, int64, error) {
	ops := tx.pending
	tx.pending = nil
	if !tx.xidAsked {
		ops = append(ops, tx.xidOp())
	}
	if i := tx.idem; i != nil {
		ops = append(ops, i.insertOp())
	}
	b := &pgx.Batch{}
	ops.queue(b)
	n := len(tx.changes)
	if n > 0 {
		tx.batch = uuid.NewString()
		outbox.QueueAppend(b, tx.batch, tx.changes)
		// Its durability comes with its number: see Write.
		b.Queue(`SET LOCAL synchronous_commit = off`)
	}
	b.Queue(`COMMIT`)
	br := conn.SendBatch(ctx, b)
	var res Result
	var first int64
	err := func() error {
		if err := ops.read(br); err != nil {
			return err
		}
		if n > 0 {
			f, wrote, err := outbox.ScanAppend(br.QueryRow())
			if err != nil {
				return translate("outbox", err)
			}
			if wrote != n {
				return fmt.Errorf("outbox: wrote %d rows, want %d", wrote, n)
			}
			res, first = Result{Changes: wrote}, f
		}
		if n > 0 {
			if _, err := br.Exec(); err != nil {
				return translate("transaction", err)
			}
		}
		tag, err := br.Exec()
		if err != nil {
			return translate("transaction", err)
		}
		if tag.String() != "COMMIT" {
			return fmt.Errorf("%w: transaction ended with %s", ErrUnavailable, tag)
		}
		return nil
	}()
	if cerr := br.Close(); err == nil && cerr != nil {
		err = translate("transaction", cerr)
	}
	if err != nil && !settledAbort(conn, err) {
		// COMMIT may have reached Postgres: the outcome is unknown here.
		return res, first, &lostCommit{err: err}
	}
	return res, first, err
}

// rollback ends a failed transaction; a connection that cannot is
// discarded instead of going back to the pool.
func rollback(conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(ctx, `ROLLBACK`); err != nil {
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
}

// translateTx translates the Postgres errors that escaped a transaction
// (commit failures, lost connections) and passes the others through.
func translateTx(err error) error {
	var pe *pgconn.PgError
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) {
		return err
	}
	if errors.As(err, &pe) || isConnError(err) {
		return translate("transaction", err)
	}
	return err
}
