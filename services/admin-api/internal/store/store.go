// Package store keeps admin-api's entities in Postgres and writes, in the
// same transaction, one outbox row per changed entity.
package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"gorm.io/gorm"
)

// Store is the Postgres store of entities and outbox.
type Store struct {
	db    *gorm.DB
	types []*entity.Type
}

// New returns a store over db for the given entity types.
func New(db *gorm.DB, types []*entity.Type) *Store {
	return &Store{db: db, types: types}
}

// Change is one changed entity within a transaction.
type Change struct {
	Op     wire.Op
	Type   string
	ID     string
	Entity []byte // canonical JSON; nil on delete
}

// Idempotency is the record of a keyed write, stored with the write.
type Idempotency struct {
	Key         string
	RequestHash string
	Status      int
	Response    []byte
}

// Tx is one admin transaction.
type Tx struct {
	s       *Store
	db      *gorm.DB // runs on conn, sending pending first
	conn    *sql.Conn
	pending []op  // statements not sent yet (BEGIN first)
	err     error // the error of a failed pending statement
	changes []Change
	idem    *Idempotency
	// xid is the transaction's id (pg_current_xact_id), learned with the
	// first round trip that reaches Postgres; with batch (the outbox rows'
	// batch id) it lets Write find out whether a COMMIT whose answer was
	// lost committed.
	xid      string
	xidAsked bool
	batch    string
}

// op is a statement whose sending is deferred: the pending statements go
// to Postgres in one pipelined round trip, before the next statement of
// the transaction or with its commit.
type op struct {
	table string // for error translation
	sql   string // with $n placeholders
	args  []any
	check func(pgconn.CommandTag) error // optional
	fix   func(error) error             // optional: adjusts the translated error
	row   func(pgx.Row) error           // optional: reads the statement's one row
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
		b := &pgx.Batch{}
		for _, o := range ops {
			b.Queue(o.sql, o.args...)
		}
		br := pc.SendBatch(ctx, b)
		err = execAll(br, ops)
		if cerr := br.Close(); err == nil && cerr != nil {
			err = translate("transaction", cerr)
		}
		return err
	})
	if err != nil {
		tx.err = err
	}
	return err
}

// execAll reads the results of ops, returning the first error.
func execAll(br pgx.BatchResults, ops []op) error {
	for _, o := range ops {
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

func pgxConn(dc any) (*pgx.Conn, error) {
	sc, ok := dc.(*stdlib.Conn)
	if !ok {
		return nil, fmt.Errorf("store: unexpected driver connection %T", dc)
	}
	return sc.Conn(), nil
}

// Result of a committed transaction.
type Result struct {
	Tx      uint64 // 0 when nothing changed
	Changes int
}

// Write runs fn in one Postgres transaction. The entity rows, one outbox
// row per change (in the order fn made them) and the idempotency record
// commit together; the transaction number is taken by the last statement.
//
// The transaction runs on one pooled connection and saves round trips:
// BEGIN and the entity writes of Insert and Update wait to be pipelined
// with the next statement, and the end (the pending statements but an
// Update, whose row count must be checked before COMMIT is sent, the
// idempotency record, the statement that takes the transaction number and
// writes the outbox rows, COMMIT) goes to Postgres in one round trip, so
// the outbox_counter row lock (which serializes committing writers) is
// held only for that statement and the commit's WAL flush. A single-entity
// create is one round trip.
//
// When the connection fails after COMMIT was sent, Write resolves the
// outcome (see resolve): committed is success; aborted is ErrUnavailable
// (nothing was written); otherwise ErrOutcomeUnknown. ErrUnavailable is
// returned only when the transaction certainly did not commit.
func (s *Store) Write(ctx context.Context, fn func(tx *Tx) error) (Result, error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return Result{}, err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return Result{}, translate("transaction", err)
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
		return Result{}, translateTx(err)
	}
	// A statement whose result is checked here (an update that must hit
	// its row) cannot share the round trip of COMMIT: send it first.
	for _, o := range tx.pending {
		if o.check != nil {
			_ = tx.flush(ctx)
			break
		}
	}
	if tx.err != nil {
		return Result{}, translateTx(tx.err)
	}
	var res Result
	var pid uint32
	err = conn.Raw(func(dc any) error {
		pc, err := pgxConn(dc)
		if err != nil {
			return err
		}
		pid = pc.PgConn().PID()
		res, err = commit(ctx, pc, tx)
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
		res, rerr := s.resolve(ctx, tx, pid)
		switch {
		case rerr == nil:
			committed = true
			return res, nil
		case errors.Is(rerr, errAborted):
			return Result{}, fmt.Errorf("%w: %w (the transaction did not commit)", ErrUnavailable, lost.err)
		default:
			return Result{}, fmt.Errorf("%w: %v; %v", ErrOutcomeUnknown, lost.err, rerr)
		}
	}
	if err != nil {
		return Result{}, translateTx(err)
	}
	committed = true
	return res, nil
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
// rows (only their presence proves anything). It returns nil (committed),
// errAborted, or why the outcome is still unknown after ResolveFor.
func (s *Store) resolve(ctx context.Context, tx *Tx, pid uint32) (Result, error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ResolveFor)
	defer cancel()
	n := len(tx.changes)
	var res Result
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
				var t sql.NullInt64
				if err := sqlDB.QueryRowContext(ctx, `SELECT max(tx) FROM outbox WHERE batch = $1::uuid`, tx.batch).Scan(&t); err == nil {
					res.Tx = uint64(t.Int64)
				}
			}
			return nil
		}
		if n == 0 {
			return backoff.Permanent(errors.New("no transaction id and no outbox rows to look for"))
		}
		// Without the id only the outbox rows can tell, and only that it
		// committed (absent rows may be of a transaction still running).
		var t sql.NullInt64
		if err := sqlDB.QueryRowContext(ctx, `SELECT max(tx) FROM outbox WHERE batch = $1::uuid`, tx.batch).Scan(&t); err != nil {
			last = err
			return err
		}
		if !t.Valid {
			last = errors.New("its outbox rows are not in Postgres")
			return last
		}
		res = Result{Tx: uint64(t.Int64), Changes: n}
		return nil
	}
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(50*time.Millisecond), backoff.WithMaxInterval(time.Second), backoff.WithMaxElapsedTime(0))
	err = backoff.Retry(check, backoff.WithContext(b, ctx))
	if err != nil && ctx.Err() != nil && last != nil {
		err = fmt.Errorf("gave up after %s: %w", ResolveFor, last)
	}
	return res, err
}

// finishSQL is the last statement of a write: it takes the next
// transaction number (the counter's row lock is held until COMMIT, so
// numbers follow commit order and a rollback gives its number back),
// writes the transaction's outbox rows with it and wakes the relay.
const finishSQL = `WITH c AS (UPDATE outbox_counter SET tx = tx + 1 RETURNING tx),
	i AS (INSERT INTO outbox (batch, tx, idx, cnt, key, op, type, entity_id, entity)
		SELECT $1::uuid, c.tx, u.n - 1, $2::int, u.key, u.op, u.type, u.entity_id, u.entity
		FROM c, unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::bytea[])
			WITH ORDINALITY AS u(key, op, type, entity_id, entity, n)
		RETURNING 1)
	SELECT c.tx, (SELECT count(*) FROM i) AS n, pg_notify('outbox', c.tx::text)::text FROM c`

// commit sends the end of tx (its pending statements, the idempotency
// record, the outbox rows with the transaction number, COMMIT) as one
// pipelined batch.
func commit(ctx context.Context, conn *pgx.Conn, tx *Tx) (Result, error) {
	ops := tx.pending
	tx.pending = nil
	if !tx.xidAsked {
		ops = append(ops, tx.xidOp())
	}
	if i := tx.idem; i != nil {
		ops = append(ops, op{table: "idempotency_keys", sql: `INSERT INTO idempotency_keys (key, request_hash, status, response) VALUES ($1, $2, $3, $4)`,
			args: []any{i.Key, i.RequestHash, i.Status, i.Response}})
	}
	b := &pgx.Batch{}
	for _, o := range ops {
		b.Queue(o.sql, o.args...)
	}
	n := len(tx.changes)
	if n > 0 {
		keys, kinds, types, ids := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		ents := make([][]byte, n)
		for i, c := range tx.changes {
			keys[i], kinds[i], types[i], ids[i], ents[i] = wire.Key(c.Type, c.ID), string(c.Op), c.Type, c.ID, c.Entity
		}
		tx.batch = uuid.NewString()
		b.Queue(finishSQL, tx.batch, n, keys, kinds, types, ids, ents)
	}
	b.Queue(`COMMIT`)
	br := conn.SendBatch(ctx, b)
	var res Result
	err := func() error {
		if err := execAll(br, ops); err != nil {
			return err
		}
		if n > 0 {
			var row struct {
				Tx uint64
				N  int
			}
			if err := br.QueryRow().Scan(&row.Tx, &row.N, nil); err != nil {
				return translate("outbox", err)
			}
			if row.N != n {
				return fmt.Errorf("outbox: wrote %d rows, want %d", row.N, n)
			}
			res = Result{Tx: row.Tx, Changes: row.N}
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
		return res, &lostCommit{err: err}
	}
	return res, err
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

// Idempotent records the response of a keyed write; it commits with it.
func (tx *Tx) Idempotent(i Idempotency) { tx.idem = &i }

// ClaimIdempotency serializes the writes that carry the same key (a
// transaction-scoped advisory lock) and returns the record a previous
// write with it committed, or nil.
func (tx *Tx) ClaimIdempotency(ctx context.Context, key string) (*Idempotency, error) {
	if err := tx.db.WithContext(ctx).Exec(`SELECT pg_advisory_xact_lock(hashtextextended(?, 7))`, key).Error; err != nil {
		return nil, translate("idempotency_keys", err)
	}
	return findIdempotency(ctx, tx.db, key)
}

// Changes returns the changes made so far.
func (tx *Tx) Changes() []Change { return tx.changes }

// FindIdempotency returns the stored response of a key, or nil.
func (s *Store) FindIdempotency(ctx context.Context, key string) (*Idempotency, error) {
	return findIdempotency(ctx, s.db, key)
}

func findIdempotency(ctx context.Context, db *gorm.DB, key string) (*Idempotency, error) {
	var rows []Idempotency
	err := db.WithContext(ctx).Raw(`SELECT key, request_hash, status, response FROM idempotency_keys WHERE key = ?`, key).Scan(&rows).Error
	if err != nil {
		return nil, translate("idempotency_keys", err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return &rows[0], nil
}

// HashRequest is the request fingerprint stored with an idempotency key.
func HashRequest(method, path string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(method + " " + path + "\n"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// Canonical encodes an entity as the Admin API returns it: keys sorted,
// every field present.
func Canonical(e map[string]any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// Decode parses stored or request JSON keeping numbers exact.
func Decode(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

func column(f entity.Field) string {
	if f.Kind == entity.Foreign {
		return f.Name + "_id"
	}
	return f.Name
}

// columns returns the mirrored columns of t and their values in e.
func columns(t *entity.Type, e map[string]any) ([]string, []any) {
	var cols []string
	var vals []any
	for _, name := range t.Columns {
		cols = append(cols, name)
		vals = append(vals, e[name])
	}
	for _, f := range t.Foreigns() {
		cols = append(cols, column(f))
		var v any
		if m, ok := e[f.Name].(map[string]any); ok {
			v = m["id"]
		}
		vals = append(vals, v)
	}
	return cols, vals
}

func (tx *Tx) record(op wire.Op, t *entity.Type, id string, body []byte) {
	tx.changes = append(tx.changes, Change{Op: op, Type: t.Name, ID: id, Entity: body})
}

// checkSize refuses an entity whose change would not be deliverable: its
// cp.changes record (as the relay encodes it) or its dp.deltas record (with
// the sync-gateway's headers) over wire.MaxRecordBytes, the limit the
// broker and the sync-gateway apply. An acknowledged write is always
// publishable.
func checkSize(t *entity.Type, id string, body []byte) error {
	ev := wire.ChangeEvent{Schema: wire.SchemaVersion, Op: wire.OpUpsert, Type: t.Name, ID: id, Entity: body}
	n, err := wire.ChangeRecordBytes(ev)
	if err != nil {
		return err
	}
	if n > wire.MaxRecordBytes {
		return entity.Errors{"@entity": []string{fmt.Sprintf("entity is too large: its change record takes %d bytes; the limit is %d", n, wire.MaxRecordBytes)}}
	}
	return nil
}

// Insert stores a new entity (which must carry its id). The statement is
// sent with the transaction's next statement or its commit, so its error
// (a unique violation, a missing reference) may come from a later call of
// tx or from Write.
func (tx *Tx) Insert(ctx context.Context, t *entity.Type, e map[string]any) ([]byte, error) {
	body, err := Canonical(e)
	if err != nil {
		return nil, err
	}
	if err := checkSize(t, e["id"].(string), body); err != nil {
		return nil, err
	}
	if tx.err != nil {
		return nil, tx.err
	}
	cols, vals := columns(t, e)
	var ph strings.Builder
	for i := range cols {
		fmt.Fprintf(&ph, ", $%d", i+3)
	}
	q := fmt.Sprintf(`INSERT INTO %s (id, body%s) VALUES ($1, $2::jsonb%s)`, t.Name, prefixed(cols), ph.String())
	args := append([]any{e["id"], string(body)}, vals...)
	tx.pending = append(tx.pending, op{table: t.Name, sql: q, args: args})
	tx.pending = append(tx.pending, refListOps(t, []map[string]any{e}, false)...)
	tx.record(wire.OpUpsert, t, e["id"].(string), body)
	return body, nil
}

// refListOps mirror the reference lists of es (entities of t) into their
// join tables, whose foreign keys make Postgres check (and lock) each
// referenced entity; replace first removes the rows of an update.
func refListOps(t *entity.Type, es []map[string]any, replace bool) []op {
	var ops []op
	for _, f := range t.RefLists() {
		jt := entity.JoinTable(t, f)
		var owners, refs, all []string
		for _, e := range es {
			id := e["id"].(string)
			all = append(all, id)
			list, _ := e[f.Name].([]any)
			for _, r := range list {
				if s, ok := r.(string); ok {
					owners, refs = append(owners, id), append(refs, s)
				}
			}
		}
		if replace && len(all) > 0 {
			ops = append(ops, op{table: jt, sql: `DELETE FROM ` + jt + ` WHERE owner_id = ANY($1::uuid[])`, args: []any{all}})
		}
		if len(refs) > 0 {
			name := f.Name
			ops = append(ops, op{table: jt,
				sql:  `INSERT INTO ` + jt + ` (owner_id, ref_id) SELECT * FROM unnest($1::uuid[], $2::uuid[]) ON CONFLICT DO NOTHING`,
				args: []any{owners, refs},
				fix: func(err error) error {
					var fe *ForeignKeyError
					if errors.As(err, &fe) {
						fe.Field = name
					}
					return err
				}})
		}
	}
	return ops
}

// ownerOf names the entity type behind a join table in a restricted
// delete (the services behind services_ca_certificates).
func (s *Store) ownerOf(err error) error {
	var re *ReferencedError
	if !errors.As(err, &re) {
		return err
	}
	for _, t := range s.types {
		for _, f := range t.RefLists() {
			if re.Children == entity.JoinTable(t, f) {
				re.Children = t.Name
			}
		}
	}
	return err
}

// Update replaces a stored entity; like Insert, its statement is sent
// later (ErrNotFound included).
func (tx *Tx) Update(ctx context.Context, t *entity.Type, e map[string]any) ([]byte, error) {
	body, err := Canonical(e)
	if err != nil {
		return nil, err
	}
	if err := checkSize(t, e["id"].(string), body); err != nil {
		return nil, err
	}
	if tx.err != nil {
		return nil, tx.err
	}
	cols, vals := columns(t, e)
	set := "body = $1::jsonb"
	for i, c := range cols {
		set += fmt.Sprintf(", %s = $%d", c, i+2)
	}
	args := append([]any{string(body)}, vals...)
	args = append(args, e["id"])
	tx.pending = append(tx.pending, op{table: t.Name, sql: fmt.Sprintf(`UPDATE %s SET %s WHERE id = $%d`, t.Name, set, len(args)), args: args,
		check: func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() == 0 {
				return ErrNotFound
			}
			return nil
		}})
	tx.pending = append(tx.pending, refListOps(t, []map[string]any{e}, true)...)
	tx.record(wire.OpUpsert, t, e["id"].(string), body)
	return body, nil
}

func prefixed(cols []string) string {
	if len(cols) == 0 {
		return ""
	}
	return ", " + strings.Join(cols, ", ")
}

// IsUUID reports whether s addresses an entity by id.
func IsUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}

// Get returns the entity addressed by id or endpoint key; with lock it is
// locked for the rest of the transaction.
func (tx *Tx) Get(ctx context.Context, t *entity.Type, idOrName string, lock bool) (map[string]any, error) {
	return get(ctx, tx.db, t, idOrName, lock, Filter{})
}

// GetScoped is Get within a parent (a nested URL): the entity's foreign
// field f.Field must reference f.ID.
func (tx *Tx) GetScoped(ctx context.Context, t *entity.Type, idOrName string, lock bool, f Filter) (map[string]any, error) {
	return get(ctx, tx.db, t, idOrName, lock, f)
}

// Get reads one entity outside a write.
func (s *Store) Get(ctx context.Context, t *entity.Type, idOrName string, f Filter) (map[string]any, error) {
	return get(ctx, s.db, t, idOrName, false, f)
}

func get(ctx context.Context, db *gorm.DB, t *entity.Type, idOrName string, lock bool, f Filter) (map[string]any, error) {
	where := "id = ?"
	if !IsUUID(idOrName) {
		if t.Endpoint == "" {
			return nil, ErrNotFound
		}
		where = t.Endpoint + " = ?"
	}
	args := []any{idOrName}
	if f.Field != "" {
		where += " AND " + f.Field + "_id = ?"
		args = append(args, f.ID)
	}
	q := fmt.Sprintf(`SELECT body::text FROM %s WHERE %s`, t.Name, where)
	if lock {
		q += " FOR UPDATE"
	}
	var bodies []string
	if err := db.WithContext(ctx).Raw(q, args...).Scan(&bodies).Error; err != nil {
		return nil, translate(t.Name, err)
	}
	if len(bodies) == 0 {
		return nil, ErrNotFound
	}
	return Decode([]byte(bodies[0]))
}

// Delete removes an entity, first deleting its cascading children (each
// with its own outbox event) and refusing when a restricting child exists.
// It reports whether the entity existed.
func (tx *Tx) Delete(ctx context.Context, t *entity.Type, id string) (bool, error) {
	for _, ct := range tx.s.types {
		for _, f := range ct.Foreigns() {
			if f.Ref != t.Name {
				continue
			}
			var ids []string
			q := fmt.Sprintf(`SELECT id::text FROM %s WHERE %s = ? ORDER BY id`, ct.Name, column(f))
			if !f.Cascade {
				q += " LIMIT 1"
			}
			if err := tx.db.WithContext(ctx).Raw(q, id).Scan(&ids).Error; err != nil {
				return false, translate(ct.Name, err)
			}
			if len(ids) > 0 && !f.Cascade {
				return false, &ReferencedError{Type: t.Name, Children: ct.Name}
			}
			for _, cid := range ids {
				if _, err := tx.Delete(ctx, ct, cid); err != nil {
					return false, err
				}
			}
		}
	}
	// Reference lists: the join table's foreign key refuses the delete
	// (also when a referencing write commits meanwhile); this check only
	// names the referencing type first.
	for _, ct := range tx.s.types {
		for _, f := range ct.RefLists() {
			if f.Ref != t.Name {
				continue
			}
			var n int64
			if err := tx.db.WithContext(ctx).Raw(`SELECT count(*) FROM (SELECT 1 FROM `+entity.JoinTable(ct, f)+` WHERE ref_id = ? LIMIT 1) x`, id).Scan(&n).Error; err != nil {
				return false, translate(t.Name, err)
			}
			if n > 0 {
				return false, &ReferencedError{Type: t.Name, Children: ct.Name}
			}
		}
	}
	r := tx.db.WithContext(ctx).Exec(fmt.Sprintf(`DELETE FROM %s WHERE id = ?`, t.Name), id)
	if r.Error != nil {
		return false, tx.s.ownerOf(translate(t.Name, r.Error))
	}
	if r.RowsAffected == 0 {
		return false, nil
	}
	tx.record(wire.OpDelete, t, id, nil)
	return true, nil
}

// Filter narrows a list.
type Filter struct {
	Field string // foreign field scoping a nested list ("service")
	ID    string
	// Tags: every tag (and=true) or any tag.
	Tags []string
	And  bool
}

// ErrOffset is an offset token that this store did not issue.
var ErrOffset = errors.New("invalid offset")

// List returns up to size entities after the offset token, ordered by id,
// and the token of the next page ("" when none).
func (s *Store) List(ctx context.Context, t *entity.Type, f Filter, size int, offset string) ([]json.RawMessage, string, error) {
	var where []string
	var args []any
	if offset != "" {
		b, err := base64.RawURLEncoding.DecodeString(offset)
		if err != nil || !IsUUID(string(b)) {
			return nil, "", ErrOffset
		}
		where = append(where, "id > ?")
		args = append(args, string(b))
	}
	if f.Field != "" {
		where = append(where, f.Field+"_id = ?")
		args = append(args, f.ID)
	}
	if len(f.Tags) > 0 {
		var tw []string
		for _, tag := range f.Tags {
			b, _ := json.Marshal([]string{tag})
			tw = append(tw, "body->'tags' @> ?::jsonb")
			args = append(args, string(b))
		}
		op := " OR "
		if f.And {
			op = " AND "
		}
		where = append(where, "("+strings.Join(tw, op)+")")
	}
	q := `SELECT id::text AS id, body::text AS body FROM ` + t.Name
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id LIMIT ?"
	args = append(args, size+1)
	var rows []struct {
		ID   string
		Body string
	}
	if err := s.db.WithContext(ctx).Raw(q, args...).Scan(&rows).Error; err != nil {
		return nil, "", translate(t.Name, err)
	}
	next := ""
	if len(rows) > size {
		rows = rows[:size]
		next = base64.RawURLEncoding.EncodeToString([]byte(rows[size-1].ID))
	}
	out := make([]json.RawMessage, len(rows))
	for i, r := range rows {
		m, err := Decode([]byte(r.Body))
		if err != nil {
			return nil, "", fmt.Errorf("decode %s/%s: %w", t.Name, r.ID, err)
		}
		b, err := Canonical(m)
		if err != nil {
			return nil, "", err
		}
		out[i] = b
	}
	return out, next, nil
}

// Ping checks that Postgres answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// OutboxStatus is the relay's progress.
type OutboxStatus struct {
	Backlog       int64      `json:"backlog"`
	LastTx        uint64     `json:"last_tx"`
	PublishedTx   uint64     `json:"last_published_tx"`
	LastPublished *time.Time `json:"last_published_at"`
}

// Outbox reports the outbox backlog and the last published transaction.
func (s *Store) Outbox(ctx context.Context) (OutboxStatus, error) {
	var st OutboxStatus
	var row struct {
		Backlog     int64
		LastTx      uint64
		PublishedTx uint64
		PublishedAt sql.NullTime
	}
	err := s.db.WithContext(ctx).Raw(`SELECT
		(SELECT count(*) FROM outbox WHERE published_at IS NULL AND tx > 0) AS backlog,
		(SELECT tx FROM outbox_counter) AS last_tx,
		r.published_tx, r.published_at FROM relay_state r`).Scan(&row).Error
	if err != nil {
		return st, translate("outbox", err)
	}
	st = OutboxStatus{Backlog: row.Backlog, LastTx: row.LastTx, PublishedTx: row.PublishedTx}
	if row.PublishedAt.Valid {
		t := row.PublishedAt.Time
		st.LastPublished = &t
	}
	return st, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// LockConfig blocks every other write to the entity tables until the
// transaction ends (readers go on), for a whole-configuration replace.
func (tx *Tx) LockConfig(ctx context.Context) error {
	names := make([]string, len(tx.s.types))
	for i, t := range tx.s.types {
		names[i] = t.Name
	}
	if err := tx.db.WithContext(ctx).Exec(`LOCK TABLE ` + strings.Join(names, ", ") + ` IN EXCLUSIVE MODE`).Error; err != nil {
		return translate("config", err)
	}
	return nil
}

// All returns every entity of t ordered by id.
func (tx *Tx) All(ctx context.Context, t *entity.Type) ([]map[string]any, error) {
	return all(ctx, tx.db, t)
}

// All reads every entity of t ordered by id.
func (s *Store) All(ctx context.Context, t *entity.Type) ([]map[string]any, error) {
	return all(ctx, s.db, t)
}

func all(ctx context.Context, db *gorm.DB, t *entity.Type) ([]map[string]any, error) {
	var bodies []string
	if err := db.WithContext(ctx).Raw(`SELECT body::text FROM ` + t.Name + ` ORDER BY id`).Scan(&bodies).Error; err != nil {
		return nil, translate(t.Name, err)
	}
	out := make([]map[string]any, len(bodies))
	for i, b := range bodies {
		m, err := Decode([]byte(b))
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", t.Name, err)
		}
		out[i] = m
	}
	return out, nil
}

// DeleteMany deletes entities of one type by id in one statement, without
// looking at their children (the caller deletes them first), and records
// an event for each deleted one, in the order of ids.
func (tx *Tx) DeleteMany(ctx context.Context, t *entity.Type, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	for _, id := range ids {
		if !IsUUID(id) {
			return fmt.Errorf("delete %s: %q is not an id", t.Name, id)
		}
	}
	var deleted []string
	err := tx.db.WithContext(ctx).Raw(`DELETE FROM `+t.Name+` WHERE id = ANY(?::uuid[]) RETURNING id::text`,
		"{"+strings.Join(ids, ",")+"}").Scan(&deleted).Error
	if err != nil {
		return tx.s.ownerOf(translate(t.Name, err))
	}
	gone := make(map[string]bool, len(deleted))
	for _, id := range deleted {
		gone[id] = true
	}
	for _, id := range ids {
		if gone[strings.ToLower(id)] {
			tx.record(wire.OpDelete, t, id, nil)
		}
	}
	return nil
}

// InsertMany inserts entities of one type with multi-row statements, all
// pipelined in one round trip. bodies, when not nil, holds the canonical
// JSON of each entity (as Canonical returns it).
func (tx *Tx) InsertMany(ctx context.Context, t *entity.Type, es []map[string]any, bodies [][]byte) error {
	const chunk = 500
	var ops []op
	for start := 0; start < len(es); start += chunk {
		end := min(start+chunk, len(es))
		var sb strings.Builder
		var args []any
		var cols []string
		for i := start; i < end; i++ {
			e := es[i]
			var body []byte
			if bodies != nil {
				body = bodies[i]
			}
			if body == nil {
				var err error
				if body, err = Canonical(e); err != nil {
					return err
				}
			}
			if err := checkSize(t, e["id"].(string), body); err != nil {
				return err
			}
			c, vals := columns(t, e)
			cols = c
			if i > start {
				sb.WriteString(",")
			}
			fmt.Fprintf(&sb, "($%d, $%d::jsonb", len(args)+1, len(args)+2)
			for k := range c {
				fmt.Fprintf(&sb, ", $%d", len(args)+3+k)
			}
			sb.WriteString(")")
			args = append(args, e["id"], string(body))
			args = append(args, vals...)
			tx.record(wire.OpUpsert, t, e["id"].(string), body)
		}
		ops = append(ops, op{table: t.Name, sql: fmt.Sprintf(`INSERT INTO %s (id, body%s) VALUES %s`, t.Name, prefixed(cols), sb.String()), args: args})
		ops = append(ops, refListOps(t, es[start:end], false)...)
	}
	return tx.run(ctx, ops)
}

// UpdateMany replaces entities of one type with multi-row statements, all
// pipelined in one round trip.
func (tx *Tx) UpdateMany(ctx context.Context, t *entity.Type, es []map[string]any) error {
	const chunk = 500
	var ops []op
	for start := 0; start < len(es); start += chunk {
		part := es[start:min(start+chunk, len(es))]
		var sb strings.Builder
		var args []any
		var cols []string
		for i, e := range part {
			body, err := Canonical(e)
			if err != nil {
				return err
			}
			if err := checkSize(t, e["id"].(string), body); err != nil {
				return err
			}
			c, vals := columns(t, e)
			cols = c
			if i > 0 {
				sb.WriteString(",")
			}
			fmt.Fprintf(&sb, "($%d::uuid, $%d::jsonb", len(args)+1, len(args)+2)
			for k, col := range c {
				if strings.HasSuffix(col, "_id") {
					fmt.Fprintf(&sb, ", $%d::uuid", len(args)+3+k)
				} else {
					fmt.Fprintf(&sb, ", $%d::text", len(args)+3+k)
				}
			}
			sb.WriteString(")")
			args = append(args, e["id"], string(body))
			args = append(args, vals...)
			tx.record(wire.OpUpsert, t, e["id"].(string), body)
		}
		set := "body = v.body"
		for _, c := range cols {
			set += ", " + c + " = v." + c
		}
		n := len(part)
		ops = append(ops, op{table: t.Name,
			sql:  fmt.Sprintf(`UPDATE %s AS t SET %s FROM (VALUES %s) AS v(id, body%s) WHERE t.id = v.id`, t.Name, set, sb.String(), prefixed(cols)),
			args: args,
			check: func(tag pgconn.CommandTag) error {
				if int(tag.RowsAffected()) != n {
					return fmt.Errorf("update %s: %d of %d rows: %w", t.Name, tag.RowsAffected(), n, ErrNotFound)
				}
				return nil
			}})
		ops = append(ops, refListOps(t, part, true)...)
	}
	return tx.run(ctx, ops)
}

// run sends the pending statements and ops in one round trip.
func (tx *Tx) run(ctx context.Context, ops []op) error {
	if tx.err != nil {
		return tx.err
	}
	tx.pending = append(tx.pending, ops...)
	return tx.flush(ctx)
}
