// Package store keeps admin-api's entities in Postgres and writes, in the
// same transaction, one outbox row per changed entity.
package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
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
	db      *gorm.DB
	changes []Change
	idem    *Idempotency
}

// Result of a committed transaction.
type Result struct {
	Tx      uint64 // 0 when nothing changed
	Changes int
}

// Write runs fn in one Postgres transaction. The entity rows, one outbox
// row per change (in the order fn made them) and the idempotency record
// commit together; the transaction number is taken by the last statement.
func (s *Store) Write(ctx context.Context, fn func(tx *Tx) error) (Result, error) {
	var res Result
	err := s.db.WithContext(ctx).Transaction(func(gtx *gorm.DB) error {
		tx := &Tx{s: s, db: gtx}
		if err := fn(tx); err != nil {
			return err
		}
		if tx.idem != nil {
			i := tx.idem
			if err := gtx.Exec(`INSERT INTO idempotency_keys (key, request_hash, status, response) VALUES (?, ?, ?, ?)`,
				i.Key, i.RequestHash, i.Status, i.Response).Error; err != nil {
				return translate("idempotency_keys", err)
			}
		}
		if len(tx.changes) == 0 {
			return nil
		}
		batch := uuid.NewString()
		if err := insertOutbox(gtx, batch, tx.changes); err != nil {
			return translate("outbox", err)
		}
		var row struct {
			Tx uint64
			N  int
		}
		// The last statement: take the next transaction number (the row
		// lock is held until COMMIT, so numbers follow commit order), stamp
		// it on this transaction's outbox rows, and wake the relay.
		err := gtx.Raw(`WITH c AS (UPDATE outbox_counter SET tx = tx + 1 RETURNING tx),
			u AS (UPDATE outbox SET tx = (SELECT tx FROM c) WHERE batch = ? AND tx = 0 RETURNING 1)
			SELECT (SELECT tx FROM c) AS tx, (SELECT count(*) FROM u) AS n,
			       pg_notify('outbox', (SELECT tx FROM c)::text) AS notified`, batch).Scan(&row).Error
		if err != nil {
			return translate("outbox", err)
		}
		if row.N != len(tx.changes) {
			return fmt.Errorf("outbox: stamped %d rows, want %d", row.N, len(tx.changes))
		}
		res = Result{Tx: row.Tx, Changes: row.N}
		return nil
	})
	if err != nil {
		return Result{}, translateTx(err)
	}
	return res, nil
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

func insertOutbox(db *gorm.DB, batch string, changes []Change) error {
	const chunk = 1000
	for start := 0; start < len(changes); start += chunk {
		end := min(start+chunk, len(changes))
		var sb strings.Builder
		sb.WriteString(`INSERT INTO outbox (batch, idx, cnt, key, op, type, entity_id, entity) VALUES `)
		args := make([]any, 0, 8*(end-start))
		for i := start; i < end; i++ {
			c := changes[i]
			if i > start {
				sb.WriteString(",")
			}
			sb.WriteString("(?,?,?,?,?,?,?,?)")
			var ent any
			if c.Entity != nil {
				ent = c.Entity
			}
			args = append(args, batch, i, len(changes), wire.Key(c.Type, c.ID), string(c.Op), c.Type, c.ID, ent)
		}
		if err := db.Exec(sb.String(), args...).Error; err != nil {
			return err
		}
	}
	return nil
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

// MaxEntityBytes caps an entity's JSON so that its change event and delta
// stay under Kafka's default record size (and the sync-gateway's
// quarantine threshold): an acknowledged write must be deliverable.
const MaxEntityBytes = 900_000

func checkSize(body []byte) error {
	if len(body) > MaxEntityBytes {
		return entity.Errors{"@entity": []string{fmt.Sprintf("entity is %d bytes; the limit is %d", len(body), MaxEntityBytes)}}
	}
	return nil
}

// Insert stores a new entity (which must carry its id).
func (tx *Tx) Insert(ctx context.Context, t *entity.Type, e map[string]any) ([]byte, error) {
	body, err := Canonical(e)
	if err != nil {
		return nil, err
	}
	if err := checkSize(body); err != nil {
		return nil, err
	}
	cols, vals := columns(t, e)
	ph := strings.TrimSuffix(strings.Repeat("?,", len(cols)), ",")
	q := fmt.Sprintf(`INSERT INTO %s (id, body%s) VALUES (?, ?::jsonb%s)`, t.Name, prefixed(cols), prefixedPH(ph))
	args := append([]any{e["id"], string(body)}, vals...)
	if err := tx.db.WithContext(ctx).Exec(q, args...).Error; err != nil {
		return nil, translate(t.Name, err)
	}
	tx.record(wire.OpUpsert, t, e["id"].(string), body)
	return body, nil
}

// Update replaces a stored entity.
func (tx *Tx) Update(ctx context.Context, t *entity.Type, e map[string]any) ([]byte, error) {
	body, err := Canonical(e)
	if err != nil {
		return nil, err
	}
	if err := checkSize(body); err != nil {
		return nil, err
	}
	cols, vals := columns(t, e)
	set := "body = ?::jsonb"
	for _, c := range cols {
		set += ", " + c + " = ?"
	}
	args := append([]any{string(body)}, vals...)
	args = append(args, e["id"])
	r := tx.db.WithContext(ctx).Exec(fmt.Sprintf(`UPDATE %s SET %s WHERE id = ?`, t.Name, set), args...)
	if r.Error != nil {
		return nil, translate(t.Name, r.Error)
	}
	if r.RowsAffected == 0 {
		return nil, ErrNotFound
	}
	tx.record(wire.OpUpsert, t, e["id"].(string), body)
	return body, nil
}

func prefixed(cols []string) string {
	if len(cols) == 0 {
		return ""
	}
	return ", " + strings.Join(cols, ", ")
}

func prefixedPH(ph string) string {
	if ph == "" {
		return ""
	}
	return ", " + ph
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
	if t.Name == wire.TypeCACertificate {
		var n int64
		if err := tx.db.WithContext(ctx).Raw(`SELECT count(*) FROM services WHERE body->'ca_certificates' @> to_jsonb(?::text)`, id).Scan(&n).Error; err != nil {
			return false, translate(t.Name, err)
		}
		if n > 0 {
			return false, &ReferencedError{Type: t.Name, Children: wire.TypeService}
		}
	}
	r := tx.db.WithContext(ctx).Exec(fmt.Sprintf(`DELETE FROM %s WHERE id = ?`, t.Name), id)
	if r.Error != nil {
		return false, translate(t.Name, r.Error)
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

// DeleteRow deletes one entity without looking at its children (the
// caller deletes them first) and records the event.
func (tx *Tx) DeleteRow(ctx context.Context, t *entity.Type, id string) error {
	r := tx.db.WithContext(ctx).Exec(`DELETE FROM `+t.Name+` WHERE id = ?`, id)
	if r.Error != nil {
		return translate(t.Name, r.Error)
	}
	if r.RowsAffected > 0 {
		tx.record(wire.OpDelete, t, id, nil)
	}
	return nil
}

// InsertMany inserts entities of one type with multi-row statements.
func (tx *Tx) InsertMany(ctx context.Context, t *entity.Type, es []map[string]any) error {
	const chunk = 500
	for start := 0; start < len(es); start += chunk {
		part := es[start:min(start+chunk, len(es))]
		var sb strings.Builder
		var args []any
		var cols []string
		bodies := make([][]byte, len(part))
		for i, e := range part {
			body, err := Canonical(e)
			if err != nil {
				return err
			}
			if err := checkSize(body); err != nil {
				return err
			}
			bodies[i] = body
			c, vals := columns(t, e)
			cols = c
			if i > 0 {
				sb.WriteString(",")
			}
			sb.WriteString("(?, ?::jsonb" + strings.Repeat(", ?", len(c)) + ")")
			args = append(args, e["id"], string(body))
			args = append(args, vals...)
		}
		q := fmt.Sprintf(`INSERT INTO %s (id, body%s) VALUES %s`, t.Name, prefixed(cols), sb.String())
		if err := tx.db.WithContext(ctx).Exec(q, args...).Error; err != nil {
			return translate(t.Name, err)
		}
		for i, e := range part {
			tx.record(wire.OpUpsert, t, e["id"].(string), bodies[i])
		}
	}
	return nil
}

// UpdateMany replaces entities of one type with multi-row statements.
func (tx *Tx) UpdateMany(ctx context.Context, t *entity.Type, es []map[string]any) error {
	const chunk = 500
	for start := 0; start < len(es); start += chunk {
		part := es[start:min(start+chunk, len(es))]
		var sb strings.Builder
		var args []any
		var cols []string
		bodies := make([][]byte, len(part))
		for i, e := range part {
			body, err := Canonical(e)
			if err != nil {
				return err
			}
			if err := checkSize(body); err != nil {
				return err
			}
			bodies[i] = body
			c, vals := columns(t, e)
			cols = c
			if i > 0 {
				sb.WriteString(",")
			}
			sb.WriteString("(?::uuid, ?::jsonb")
			for _, col := range c {
				if strings.HasSuffix(col, "_id") {
					sb.WriteString(", ?::uuid")
				} else {
					sb.WriteString(", ?::text")
				}
			}
			sb.WriteString(")")
			args = append(args, e["id"], string(body))
			args = append(args, vals...)
		}
		set := "body = v.body"
		for _, c := range cols {
			set += ", " + c + " = v." + c
		}
		q := fmt.Sprintf(`UPDATE %s AS t SET %s FROM (VALUES %s) AS v(id, body%s) WHERE t.id = v.id`, t.Name, set, sb.String(), prefixed(cols))
		r := tx.db.WithContext(ctx).Exec(q, args...)
		if r.Error != nil {
			return translate(t.Name, r.Error)
		}
		if int(r.RowsAffected) != len(part) {
			return fmt.Errorf("update %s: %d of %d rows: %w", t.Name, r.RowsAffected, len(part), ErrNotFound)
		}
		for i, e := range part {
			tx.record(wire.OpUpsert, t, e["id"].(string), bodies[i])
		}
	}
	return nil
}
