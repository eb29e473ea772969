package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/jackc/pgx/v5/pgconn"
)

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

// Row is an entity prepared for InsertRows or UpdateRows: what its
// statements need (id, canonical JSON, mirrored columns, reference lists),
// without the entity's map, so that a configuration replace can hold many
// rows at little more than their JSON.
type Row struct {
	row
	refs [][]string // per reference list of the type (t.RefLists()), the ids
}

// PrepareRow prepares e (an entity of t; body, when not nil, its canonical
// JSON) for InsertRows or UpdateRows, refusing what encode refuses.
func PrepareRow(t *entity.Type, e map[string]any, body []byte) (Row, error) {
	r, err := encode(t, e, body)
	if err != nil {
		return Row{}, err
	}
	out := Row{row: r}
	for _, f := range t.RefLists() {
		var ids []string
		list, _ := e[f.Name].([]any)
		for _, v := range list {
			if s, ok := v.(string); ok {
				ids = append(ids, s)
			}
		}
		out.refs = append(out.refs, ids)
	}
	return out, nil
}

// InsertRows inserts prepared rows of one type with multi-row statements,
// all pipelined in one round trip.
func (tx *Tx) InsertRows(ctx context.Context, t *entity.Type, rows []Row) error {
	const chunk = 500
	var ops []op
	for start := 0; start < len(rows); start += chunk {
		part := rows[start:min(start+chunk, len(rows))]
		var sb strings.Builder
		var args []any
		var cols []string
		for i, r := range part {
			cols = r.cols
			if i > 0 {
				sb.WriteString(",")
			}
			fmt.Fprintf(&sb, "($%d, $%d::jsonb", len(args)+1, len(args)+2)
			for k := range r.cols {
				fmt.Fprintf(&sb, ", $%d", len(args)+3+k)
			}
			sb.WriteString(")")
			args = append(args, r.id, string(r.body))
			args = append(args, r.vals...)
			tx.record(wire.OpUpsert, t, r.id, r.body)
		}
		ops = append(ops, op{table: t.Name, sql: fmt.Sprintf(`INSERT INTO %s (id, body%s) VALUES %s`, t.Name, prefixed(cols), sb.String()), args: args})
		ops = append(ops, refListOps(t, part, false)...)
	}
	return tx.run(ctx, ops)
}

// UpdateRows replaces entities of one type by prepared rows with
// multi-row statements, all pipelined in one round trip.
func (tx *Tx) UpdateRows(ctx context.Context, t *entity.Type, rows []Row) error {
	const chunk = 500
	var ops []op
	for start := 0; start < len(rows); start += chunk {
		part := rows[start:min(start+chunk, len(rows))]
		var sb strings.Builder
		var args []any
		var cols []string
		for i, r := range part {
			cols = r.cols
			if i > 0 {
				sb.WriteString(",")
			}
			fmt.Fprintf(&sb, "($%d::uuid, $%d::jsonb", len(args)+1, len(args)+2)
			for k, col := range r.cols {
				if strings.HasSuffix(col, "_id") {
					fmt.Fprintf(&sb, ", $%d::uuid", len(args)+3+k)
				} else {
					fmt.Fprintf(&sb, ", $%d::text", len(args)+3+k)
				}
			}
			sb.WriteString(")")
			args = append(args, r.id, string(r.body))
			args = append(args, r.vals...)
			tx.record(wire.OpUpsert, t, r.id, r.body)
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

// refListOps mirror the reference lists of rows (entities of t) into
// their join tables, whose foreign keys make Postgres check (and lock)
// each referenced entity; replace first removes the rows of an update.
func refListOps(t *entity.Type, rows []Row, replace bool) []op {
	var ops []op
	for k, f := range t.RefLists() {
		jt := entity.JoinTable(t, f)
		var owners, refs, all []string
		for _, r := range rows {
			all = append(all, r.id)
			for _, s := range r.refs[k] {
				owners, refs = append(owners, r.id), append(refs, s)
			}
		}
		ops = append(ops, refListStatements(jt, f.Name, owners, refs, all, replace)...)
	}
	return ops
}

// run sends the pending statements and ops in one round trip.
func (tx *Tx) run(ctx context.Context, ops []op) error {
	if tx.err != nil {
		return tx.err
	}
	tx.pending = append(tx.pending, ops...)
	return tx.flush(ctx)
}
