package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/shared/schema"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
)

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

// row is an entity encoded for a statement: its id, its canonical JSON and
// its mirrored columns with their values.
type row struct {
	id   string
	body []byte
	cols []string
	vals []any
}

// encode returns e as a row (body, when not nil, is its canonical JSON
// already), refusing an entity without an id or too large to publish
// (checkSize).
func encode(t *entity.Type, e map[string]any, body []byte) (row, error) {
	id, err := entity.ID(e)
	if err != nil {
		return row{}, fmt.Errorf("%s: %w", t.Name, err)
	}
	if body == nil {
		if body, err = entity.Canonical(e); err != nil {
			return row{}, err
		}
	}
	if err := checkSize(t, id, body); err != nil {
		return row{}, err
	}
	cols, vals := columns(t, e)
	return row{id: id, body: body, cols: cols, vals: vals}, nil
}

// Insert stores a new entity (which must carry its id). The statement is
// sent with the transaction's next statement or its commit, so its error
// (a unique violation, a missing reference) may come from a later call of
// tx or from Write.
func (tx *Tx) Insert(ctx context.Context, t *entity.Type, e map[string]any) ([]byte, error) {
	r, err := PrepareRow(t, e, nil)
	if err == nil {
		err = tx.err
	}
	if err != nil {
		return nil, err
	}
	var ph strings.Builder
	for i := range r.cols {
		fmt.Fprintf(&ph, ", $%d", i+3)
	}
	q := fmt.Sprintf(`INSERT INTO %s (id, body%s) VALUES ($1, $2::jsonb%s)`, t.Name, prefixed(r.cols), ph.String())
	args := append([]any{r.id, string(r.body)}, r.vals...)
	tx.pending = append(tx.pending, op{table: t.Name, sql: q, args: args})
	tx.pending = append(tx.pending, refListOps(t, []Row{r}, false)...)
	tx.record(wire.OpUpsert, t, r.id, r.body)
	return r.body, nil
}

// refListStatements write the rows (owners[i], refs[i]) of the join table
// jt of the reference list field name, first removing those of the owners
// all when replace.
func refListStatements(jt, name string, owners, refs, all []string, replace bool) []op {
	var ops []op
	if replace && len(all) > 0 {
		ops = append(ops, op{table: jt, sql: `DELETE FROM ` + jt + ` WHERE owner_id = ANY($1::uuid[])`, args: []any{all}})
	}
	if len(refs) > 0 {
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
	return ops
}

// field returns the store's type that r is from and its field r; false
// when the store does not keep that type.
func (s *Store) field(r schema.Ref) (*entity.Type, entity.Field, bool) {
	for _, t := range s.types {
		if t.Name == r.From {
			f, ok := t.Field(r.Field)
			return t, f, ok
		}
	}
	return nil, entity.Field{}, false
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
	r, err := PrepareRow(t, e, nil)
	if err == nil {
		err = tx.err
	}
	if err != nil {
		return nil, err
	}
	set := "body = $1::jsonb"
	for i, c := range r.cols {
		set += fmt.Sprintf(", %s = $%d", c, i+2)
	}
	args := append([]any{string(r.body)}, r.vals...)
	args = append(args, r.id)
	tx.pending = append(tx.pending, op{table: t.Name, sql: fmt.Sprintf(`UPDATE %s SET %s WHERE id = $%d`, t.Name, set, len(args)), args: args,
		check: func(tag pgconn.CommandTag) error {
			if tag.RowsAffected() == 0 {
				return ErrNotFound
			}
			return nil
		}})
	tx.pending = append(tx.pending, refListOps(t, []Row{r}, true)...)
	tx.record(wire.OpUpsert, t, r.id, r.body)
	return r.body, nil
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

// Delete removes an entity, first deleting its cascading children (each
// with its own outbox event) and refusing when a restricting child exists:
// the references to t.Name of the entity graph (schema.RefsTo), in its
// order, among the store's types.
// It reports whether the entity existed.
func (tx *Tx) Delete(ctx context.Context, t *entity.Type, id string) (bool, error) {
	refs := schema.RefsTo(t.Name)
	for _, r := range refs {
		ct, f, ok := tx.s.field(r)
		if !ok || r.List {
			continue
		}
		cascade := r.OnDelete == schema.Cascade
		var ids []string
		q := fmt.Sprintf(`SELECT id::text FROM %s WHERE %s = ? ORDER BY id`, ct.Name, column(f))
		if !cascade {
			q += " LIMIT 1"
		}
		if err := tx.db.WithContext(ctx).Raw(q, id).Scan(&ids).Error; err != nil {
			return false, translate(ct.Name, err)
		}
		if len(ids) > 0 && !cascade {
			return false, &ReferencedError{Type: t.Name, Children: ct.Name}
		}
		for _, cid := range ids {
			if _, err := tx.Delete(ctx, ct, cid); err != nil {
				return false, err
			}
		}
	}
	// Reference lists: the join table's foreign key refuses the delete
	// (also when a referencing write commits meanwhile); this check only
	// names the referencing type first.
	for _, r := range refs {
		ct, f, ok := tx.s.field(r)
		if !ok || !r.List {
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
