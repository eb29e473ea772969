package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"
)

// Get returns the entity addressed by id or endpoint key; with lock it is
// locked for the rest of the transaction.
func (tx *Tx) Get(ctx context.Context, t *entity.Type, idOrName string, lock bool) (map[string]any, error) {
	return tx.get(ctx, t, idOrName, lock, Filter{})
}

// GetScoped is Get within a parent (a nested URL): the entity's foreign
// field f.Field must reference f.ID.
func (tx *Tx) GetScoped(ctx context.Context, t *entity.Type, idOrName string, lock bool, f Filter) (map[string]any, error) {
	return tx.get(ctx, t, idOrName, lock, f)
}

// get reads through pgx as one statement of the transaction's pipeline:
// the first read of a write shares its round trip with BEGIN and the
// transaction-id query (gorm would send it on a round trip of its own).
func (tx *Tx) get(ctx context.Context, t *entity.Type, idOrName string, lock bool, f Filter) (map[string]any, error) {
	q, args, ok := selectOne(t, idOrName, lock, f, func(n int) string { return fmt.Sprintf("$%d", n) })
	if !ok {
		return nil, ErrNotFound
	}
	if !tx.xidAsked && tx.err == nil {
		// Before the read: the id is known even when the read fails.
		tx.pending = append(tx.pending, tx.xidOp())
	}
	var body []byte
	found := false
	tx.pending = append(tx.pending, op{table: t.Name, sql: q, args: args, row: func(r pgx.Row) error {
		err := r.Scan(&body)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	}})
	if err := tx.flush(ctx); err != nil {
		return nil, err
	}
	if !found {
		return nil, ErrNotFound
	}
	return entity.Decode(body)
}

// Get reads one entity outside a write.
func (s *Store) Get(ctx context.Context, t *entity.Type, idOrName string, f Filter) (map[string]any, error) {
	return get(ctx, s.db, t, idOrName, false, f)
}

func get(ctx context.Context, db *gorm.DB, t *entity.Type, idOrName string, lock bool, f Filter) (map[string]any, error) {
	q, args, ok := selectOne(t, idOrName, lock, f, func(int) string { return "?" })
	if !ok {
		return nil, ErrNotFound
	}
	var bodies []string
	if err := db.WithContext(ctx).Raw(q, args...).Scan(&bodies).Error; err != nil {
		return nil, translate(t.Name, err)
	}
	if len(bodies) == 0 {
		return nil, ErrNotFound
	}
	return entity.Decode([]byte(bodies[0]))
}

// selectOne is the statement reading one entity's body by id or by its
// endpoint key (within f's parent), with placeholders made by ph (1-based);
// ok is false when idOrName cannot name an entity of t.
func selectOne(t *entity.Type, idOrName string, lock bool, f Filter, ph func(n int) string) (q string, args []any, ok bool) {
	where := "id = " + ph(1)
	if !IsUUID(idOrName) {
		if t.Endpoint == "" {
			return "", nil, false
		}
		where = t.Endpoint + " = " + ph(1)
	}
	args = []any{idOrName}
	if f.Field != "" {
		where += " AND " + f.Field + "_id = " + ph(2)
		args = append(args, f.ID)
	}
	q = fmt.Sprintf(`SELECT body::text FROM %s WHERE %s`, t.Name, where)
	if lock {
		q += " FOR UPDATE"
	}
	return q, args, true
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
		m, err := entity.Decode([]byte(r.Body))
		if err != nil {
			return nil, "", fmt.Errorf("decode %s/%s: %w", t.Name, r.ID, err)
		}
		b, err := entity.Canonical(m)
		if err != nil {
			return nil, "", err
		}
		out[i] = b
	}
	return out, next, nil
}

// Each calls fn with every entity of t, ordered by id, as Postgres sends
// them (one row at a time: never the whole table in memory).
func (tx *Tx) Each(ctx context.Context, t *entity.Type, fn func(e map[string]any) error) error {
	rows, err := tx.db.WithContext(ctx).Raw(`SELECT body::text FROM ` + t.Name + ` ORDER BY id`).Rows()
	if err != nil {
		return translate(t.Name, err)
	}
	return eachBody(rows, t, fn)
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
		m, err := entity.Decode([]byte(b))
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", t.Name, err)
		}
		out[i] = m
	}
	return out, nil
}

// Export calls fn with every entity of types, type by type in the order
// given and by id within a type, as Postgres sends them: the rows are read
// one at a time from the connection (never a whole table in memory), in
// one REPEATABLE READ read-only transaction, so the entities are one
// consistent snapshot of the configuration. An error of fn stops it.
func (s *Store) Export(ctx context.Context, types []*entity.Type, fn func(t *entity.Type, e map[string]any) error) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	tx, err := sqlDB.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return translate("transaction", err)
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to keep
	for _, t := range types {
		if err := exportType(ctx, tx, t, fn); err != nil {
			return err
		}
	}
	return nil
}

func exportType(ctx context.Context, tx *sql.Tx, t *entity.Type, fn func(t *entity.Type, e map[string]any) error) error {
	rows, err := tx.QueryContext(ctx, `SELECT body::text FROM `+t.Name+` ORDER BY id`)
	if err != nil {
		return translate(t.Name, err)
	}
	return eachBody(rows, t, func(m map[string]any) error { return fn(t, m) })
}

// eachBody decodes the body column of rows (entities of t) one row at a
// time and calls fn with each; it closes rows.
func eachBody(rows *sql.Rows, t *entity.Type, fn func(e map[string]any) error) error {
	defer rows.Close()
	var b sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&b); err != nil {
			return translate(t.Name, err)
		}
		m, err := entity.Decode(b)
		if err != nil {
			return fmt.Errorf("decode %s: %w", t.Name, err)
		}
		if err := fn(m); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return translate(t.Name, err)
	}
	return nil
}
