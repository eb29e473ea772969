package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotFound means the addressed entity does not exist.
var ErrNotFound = errors.New("not found")

// ErrUnavailable means Postgres could not be reached or failed mid-way and
// the write certainly did not commit: it failed before COMMIT was sent, or
// Write found out that the transaction aborted.
var ErrUnavailable = errors.New("database unavailable")

// ErrOutcomeUnknown means the connection failed after COMMIT was sent and
// Write could not find out (within ResolveFor) whether the transaction
// committed. A retry with the same Idempotency-Key is safe.
var ErrOutcomeUnknown = errors.New("database connection lost at commit; the outcome is unknown")

// UniqueError is a unique-constraint violation.
type UniqueError struct {
	Type   string
	Fields map[string]string // field -> value
}

func (e *UniqueError) Error() string {
	return "UNIQUE violation detected on '" + luaTable(e.Fields) + "'"
}

// ForeignKeyError is a reference to a missing entity.
type ForeignKeyError struct {
	Field string // field in the referencing entity ("service")
	Key   string // "id", or the endpoint key the reference used ("name")
	Value string
	Ref   string // referenced type ("services")
}

func (e *ForeignKeyError) Error() string {
	return fmt.Sprintf("the foreign key '{%s=%q}' does not reference an existing '%s' entity.", e.Key, e.Value, e.Ref)
}

// ReferencedError is a restricted delete: Children entities still point at
// the Type entity.
type ReferencedError struct {
	Type     string
	Children string
}

func (e *ReferencedError) Error() string {
	return fmt.Sprintf("an existing '%s' entity references this '%s' entity", e.Children, e.Type)
}

func luaTable(fields map[string]string) string {
	var parts []string
	for _, k := range sortedKeys(fields) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, fields[k]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

var (
	indexName = regexp.MustCompile(`^index row .* for index "([a-z_]+)"`)
	keyDetail = regexp.MustCompile(`^Key \((.+)\)=\((.*)\) (already exists|is not present in table "([a-z_]+)"|is still referenced from table "([a-z_]+)")`)
)

// translate maps a Postgres error of an operation on table typ to the
// store's errors; others are returned wrapped.
func translate(typ string, err error) error {
	if err == nil {
		return nil
	}
	var (
		ue *UniqueError
		fe *ForeignKeyError
		re *ReferencedError
	)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown) ||
		errors.As(err, &ue) || errors.As(err, &fe) || errors.As(err, &re) {
		return err // translated already (a deferred statement's error)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		m := keyDetail.FindStringSubmatch(pe.Detail)
		switch pe.Code {
		case "23505":
			ue := &UniqueError{Type: pe.TableName, Fields: map[string]string{}}
			if ue.Type == "" {
				ue.Type = typ
			}
			if pe.ConstraintName == "plugins_scope" && m != nil {
				name, _, _ := strings.Cut(m[2], ", ")
				ue.Fields["name"] = name
			} else if m != nil {
				cols := strings.Split(m[1], ", ")
				vals := strings.Split(m[2], ", ")
				for i, c := range cols {
					c = strings.TrimSuffix(c, "_id")
					if i < len(vals) {
						ue.Fields[c] = vals[i]
					}
				}
			}
			return ue
		case "23503":
			if m != nil && m[5] != "" {
				return &ReferencedError{Type: typ, Children: m[5]}
			}
			if m != nil {
				return &ForeignKeyError{Field: strings.TrimSuffix(m[1], "_id"), Key: "id", Value: m[2], Ref: m[4]}
			}
		case "22021", "22P05":
			// A NUL character (in text, or \u0000 in jsonb): bad input
			// that validation did not catch (a name in a URL or a
			// reference).
			return entity.Errors{"@entity": []string{entity.MsgNUL}}
		case "54000":
			// A unique column's value too long for its btree index.
			if im := indexName.FindStringSubmatch(pe.Message); im != nil {
				field := strings.TrimSuffix(strings.TrimPrefix(im[1], typ+"_"), "_key")
				return entity.Errors{field: "value is too long to be indexed as a unique key"}
			}
			return fmt.Errorf("postgres %s: %w", typ, err)
		case "57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004", "53300":
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return fmt.Errorf("postgres %s: %w", typ, err)
	}
	if isConnError(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return fmt.Errorf("postgres %s: %w", typ, err)
}

func isConnError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.Is(err, driver.ErrBadConn), errors.As(err, &ne), errors.As(err, &oe),
		errors.Is(err, context.DeadlineExceeded), pgconn.SafeToRetry(err), pgconn.Timeout(err):
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "unexpected EOF") ||
		strings.Contains(s, "conn closed") || strings.Contains(s, "broken pipe") || strings.Contains(s, "connection reset")
}
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
