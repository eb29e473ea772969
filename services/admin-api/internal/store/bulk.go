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
			r, err := encode(t, e, body)
			if err != nil {
				return err
			}
			id, body, c, vals := r.id, r.body, r.cols, r.vals
			cols = c
			if i > start {
				sb.WriteString(",")
			}
			fmt.Fprintf(&sb, "($%d, $%d::jsonb", len(args)+1, len(args)+2)
			for k := range c {
				fmt.Fprintf(&sb, ", $%d", len(args)+3+k)
			}
			sb.WriteString(")")
			args = append(args, id, string(body))
			args = append(args, vals...)
			tx.record(wire.OpUpsert, t, id, body)
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
			r, err := encode(t, e, nil)
			if err != nil {
				return err
			}
			id, body, c, vals := r.id, r.body, r.cols, r.vals
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
			args = append(args, id, string(body))
			args = append(args, vals...)
			tx.record(wire.OpUpsert, t, id, body)
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
