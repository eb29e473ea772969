package store

import (
	"errors"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// result is the answer to one statement of a fake batch.
type result struct {
	tag  string
	err  error
	scan string // QueryRow: the value scanned into the first destination
}

// fakeResults answers a batch's statements in order, recording which
// results were read and how.
type fakeResults struct {
	results []result
	read    []string
}

func (f *fakeResults) next(how string) result {
	if len(f.read) >= len(f.results) {
		panic("read past the batch")
	}
	f.read = append(f.read, how)
	return f.results[len(f.read)-1]
}

func (f *fakeResults) Exec() (pgconn.CommandTag, error) {
	r := f.next("exec")
	return pgconn.NewCommandTag(r.tag), r.err
}
func (f *fakeResults) Query() (pgx.Rows, error) { panic("not used") }
func (f *fakeResults) QueryRow() pgx.Row        { return fakeRow(f.next("row")) }
func (f *fakeResults) Close() error             { return nil }

type fakeRow result

func (r fakeRow) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	*dest[0].(*string) = r.scan
	return nil
}

func TestPipelineRead(t *testing.T) {
	unique := &pgconn.PgError{Code: "23505", TableName: "services", Detail: `Key (name)=(a) already exists.`}
	nul := &pgconn.PgError{Code: "22P05"}
	errNoRow := errors.New("update hit no row")
	var xid string
	one := func(tag pgconn.CommandTag) error {
		if tag.RowsAffected() != 1 {
			return errNoRow
		}
		return nil
	}
	for _, tc := range []struct {
		name    string
		ops     pipeline
		results []result
		want    func(error) bool
		read    []string // results read, in order
	}{
		{"all succeed: every result read in order, rows scanned",
			pipeline{{table: "t", sql: "BEGIN"}, {table: "services", sql: "INSERT"},
				{table: "transaction", sql: "SELECT xid", row: func(r pgx.Row) error { return r.Scan(&xid) }}},
			[]result{{tag: "BEGIN"}, {tag: "INSERT 0 1"}, {scan: "42"}},
			func(err error) bool { return err == nil && xid == "42" }, []string{"exec", "exec", "row"}},
		{"the first failure ends the reading, translated for its table",
			pipeline{{table: "services", sql: "INSERT"}, {table: "routes", sql: "INSERT"}},
			[]result{{err: unique}, {err: errors.New("aborted")}},
			func(err error) bool {
				var ue *UniqueError
				return errors.As(err, &ue) && ue.Type == "services" && ue.Fields["name"] == "a"
			}, []string{"exec"}},
		{"fix adjusts the translated error",
			pipeline{{table: "services_ca_certificates", sql: "INSERT", fix: func(err error) error {
				return errors.Join(errors.New("fixed"), err)
			}}},
			[]result{{err: nul}},
			func(err error) bool { return err != nil && err.Error()[:5] == "fixed" }, []string{"exec"}},
		{"check sees the command tag",
			pipeline{{table: "services", sql: "UPDATE", check: one}, {table: "services", sql: "UPDATE", check: one}},
			[]result{{tag: "UPDATE 1"}, {tag: "UPDATE 0"}},
			func(err error) bool { return errors.Is(err, errNoRow) }, []string{"exec", "exec"}},
		{"a failed row read is translated",
			pipeline{{table: "transaction", sql: "SELECT", row: func(r pgx.Row) error { var s string; return r.Scan(&s) }}, {sql: "COMMIT"}},
			[]result{{err: &pgconn.PgError{Code: "57P01"}}, {tag: "COMMIT"}},
			func(err error) bool { return errors.Is(err, ErrUnavailable) }, []string{"row"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xid = ""
			br := &fakeResults{results: tc.results}
			err := tc.ops.read(br)
			if !tc.want(err) {
				t.Errorf("read = %v", err)
			}
			if !reflect.DeepEqual(br.read, tc.read) {
				t.Errorf("results read %v, want %v", br.read, tc.read)
			}
		})
	}
}

func TestPipelineQueue(t *testing.T) {
	p := pipeline{{sql: "BEGIN"}, {sql: "INSERT INTO t VALUES ($1)", args: []any{1}}}
	b := &pgx.Batch{}
	b.Queue("SELECT 0")
	p.queue(b)
	if b.Len() != 3 || b.QueuedQueries[1].SQL != "BEGIN" || !reflect.DeepEqual(b.QueuedQueries[2].Arguments, []any{1}) {
		t.Fatalf("queued %d statements: %+v", b.Len(), b.QueuedQueries)
	}
}

// TestGuardedChecks: an UPDATE whose check refuses only zero rows becomes
// a statement Postgres refuses itself (so it can share COMMIT's round
// trip), its error read as the check's; other checks stay with Go.
func TestGuardedChecks(t *testing.T) {
	atLeastOne := func(tag pgconn.CommandTag) error {
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return nil
	}
	exactly := func(n int64) func(pgconn.CommandTag) error {
		return func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() != n {
				return ErrNotFound
			}
			return nil
		}
	}
	for _, c := range []struct {
		name  string
		o     op
		ok    bool
		wantQ string
	}{
		{"update of one row", op{sql: "UPDATE services SET body = $1 WHERE id = $2", check: atLeastOne}, true,
			"WITH w AS (UPDATE services SET body = $1 WHERE id = $2 RETURNING 1) SELECT 1 / count(*)::int FROM w"},
		{"update of exactly one row", op{sql: "UPDATE services SET body = $1 WHERE id = $2", check: exactly(1)}, false, ""},
		{"update of exactly three rows", op{sql: "UPDATE services AS t SET body = v.body FROM (VALUES ...) WHERE t.id = v.id", check: exactly(3)}, false, ""},
		{"already returning", op{sql: "UPDATE services SET body = $1 RETURNING id", check: atLeastOne}, false, ""},
		{"insert", op{sql: "INSERT INTO services (id) VALUES ($1)", check: atLeastOne}, false, ""},
		{"no check", op{sql: "UPDATE services SET body = $1 WHERE id = $2"}, false, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			g, ok := c.o.guarded()
			if ok != c.ok {
				t.Fatalf("guarded = %v, want %v", ok, c.ok)
			}
			if !ok {
				return
			}
			if g.sql != c.wantQ || g.check != nil {
				t.Fatalf("guarded statement %q (check %v)", g.sql, g.check != nil)
			}
			if err := g.fix(translate("services", &pgconn.PgError{Code: "22012", Message: "division by zero"})); !errors.Is(err, ErrNotFound) {
				t.Fatalf("division by zero reads as %v, want ErrNotFound", err)
			}
			other := &pgconn.PgError{Code: "23505"}
			if err := g.fix(other); err != error(other) {
				t.Fatalf("another error reads as %v", err)
			}
		})
	}
}
