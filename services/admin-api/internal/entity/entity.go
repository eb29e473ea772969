// Package entity describes deltaplane's Admin API entities the way Kong's
// schemas do: one descriptor per entity type (fields, defaults, validation;
// its reference fields and the order of the types come from the entity
// graph, package shared/schema), and one generic mechanism that turns a
// request body into a complete, checked entity.
package entity

import (
	"fmt"
	"sort"
	"strings"

	"github.com/deltaplane/deltaplane/shared/schema"
)

// Kind is the JSON type of a field.
type Kind int

const (
	String Kind = iota
	Integer
	Number
	Boolean
	Array   // array of Elem
	Set     // array of Elem without duplicates
	Record  // object with known Fields
	Map     // object with arbitrary keys, values of Elem
	Foreign // {"id": "<uuid>"} or null
	JSON    // any JSON value
)

// Field is one attribute of an entity.
type Field struct {
	Name     string
	Kind     Kind
	Elem     *Field // for Array, Set, Map
	Fields   []Field
	Default  any // JSON-shaped default; nil is null
	Required bool
	Enum     []string
	Min, Max *int64
	// Ref is the reference a Foreign field (or an Array of ids, a
	// reference list) is in the entity graph; nil on other fields. The
	// descriptors take their reference fields from package schema
	// (withRefs). Postgres enforces a reference list through the join
	// table JoinTable names (see RefLists).
	Ref *schema.Ref
	// Check validates a non-null value; it returns a message or "".
	Check func(v any) string
	// ReadOnly fields are set by the server (id, created_at, updated_at).
	ReadOnly bool
	// Strict records reject unknown keys (default); Loose accepts them.
	Loose bool
}

// Type describes one entity type.
type Type struct {
	Name string // collection name, as wire.Type*
	// Endpoint is the field that also addresses an entity in URLs
	// (/services/{id or name}); empty when only ids do.
	Endpoint string
	Fields   []Field
	// Columns are the fields mirrored into table columns (unique keys);
	// foreign fields are always mirrored as <name>_id.
	Columns []string
	// Prepare rewrites shorthands before validation (url on services). It
	// sees the raw input and the entity being built.
	Prepare func(in map[string]any, e map[string]any, creating bool) Errors
	// Check validates the whole entity after its fields.
	Check func(e map[string]any) Errors
	// Fill completes server-generated values (a key-auth key).
	Fill func(e map[string]any)
	// Extra are fields of the Admin API's requests and answers that are
	// not stored with the entity (a certificate's "snis", its SNI
	// entities' names; package app handles them); Normalize refuses them.
	Extra []Field
}

// Field returns the named field.
func (t *Type) Field(name string) (Field, bool) {
	for _, f := range t.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

// Foreigns lists the foreign-key fields.
func (t *Type) Foreigns() []Field {
	var out []Field
	for _, f := range t.Fields {
		if f.Kind == Foreign {
			out = append(out, f)
		}
	}
	return out
}

// RefLists lists the reference-list fields: arrays of ids of Ref.To.
func (t *Type) RefLists() []Field {
	var out []Field
	for _, f := range t.Fields {
		if f.Ref != nil && f.Ref.List {
			out = append(out, f)
		}
	}
	return out
}

// JoinTable is the table that mirrors a reference list, one row per
// (owner_id, ref_id), with foreign keys to both (owner: cascade, ref:
// restrict); a migration creates it.
func JoinTable(t *Type, f Field) string { return t.Name + "_" + f.Name }

// Errors maps a field name (or "@entity") to its violation message(s).
type Errors map[string]any

// Add records a message for a field.
func (e Errors) Add(field, msg string) {
	if field == "@entity" {
		list, _ := e[field].([]string)
		e[field] = append(list, msg)
		return
	}
	if _, ok := e[field]; !ok {
		e[field] = msg
	}
}

// Merge adds all of o.
func (e Errors) Merge(o Errors) {
	for k, v := range o {
		if k == "@entity" {
			for _, m := range v.([]string) {
				e.Add(k, m)
			}
			continue
		}
		if _, ok := e[k]; !ok {
			e[k] = v
		}
	}
}

// Count is the number of violations.
func (e Errors) Count() int {
	n := 0
	for k, v := range e {
		if l, ok := v.([]string); ok && k == "@entity" {
			n += len(l)
			continue
		}
		n++
	}
	return n
}

// Message is Kong's summary: "2 schema violations (host: required field
// missing; port: ...)"; entity checks (@entity) without a field prefix.
func (e Errors) Message() string {
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		if l, ok := e[k].([]string); ok && k == "@entity" {
			parts = append(parts, l...) // Kong: entity checks without a prefix
			continue
		}
		parts = append(parts, flatten(k, e[k])...)
	}
	n := len(parts)
	if n == 1 {
		return "schema violation (" + parts[0] + ")"
	}
	return fmt.Sprintf("%d schema violations (%s)", n, strings.Join(parts, "; "))
}

func flatten(prefix string, v any) []string {
	switch x := v.(type) {
	case string:
		return []string{prefix + ": " + x}
	case []string:
		var out []string
		for _, m := range x {
			out = append(out, prefix+": "+m)
		}
		return out
	case Errors:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var out []string
		for _, k := range keys {
			out = append(out, flatten(prefix+"."+k, x[k])...)
		}
		return out
	default:
		return []string{fmt.Sprintf("%s: %v", prefix, v)}
	}
}

// Normalize builds a complete entity of type t from a request body.
//
// base is the stored entity for PATCH (fields not in the input keep their
// values; records merge), or nil for POST and PUT, where every field not in
// the input takes its default. keep holds server fields carried over (id,
// created_at on PUT). The result has every field of the type, null when
// unset, so it is exactly what GET returns.
func Normalize(t *Type, in map[string]any, base map[string]any, keep map[string]any) (map[string]any, Errors) {
	errs := Errors{}
	creating := base == nil
	e := map[string]any{}
	if creating {
		for _, f := range t.Fields {
			e[f.Name] = cloneJSON(f.Default)
		}
	} else {
		for k, v := range base {
			e[k] = cloneJSON(v)
		}
	}
	for k, v := range keep {
		e[k] = v
	}
	in, _ = cloneJSON(in).(map[string]any)
	for k, v := range in {
		if hasNUL(k) || hasNUL(v) {
			errs.Add(k, MsgNUL)
			delete(in, k)
		}
	}
	if t.Prepare != nil {
		errs.Merge(t.Prepare(in, e, creating))
	}
	for k, v := range in {
		f, ok := t.Field(k)
		if !ok {
			errs.Add(k, "unknown field")
			continue
		}
		if f.ReadOnly {
			if k == "id" {
				if s, ok := v.(string); ok && s == e["id"] {
					continue
				}
				if creating && e["id"] == nil {
					if msg := checkUUID(v); msg != "" {
						errs.Add(k, msg)
					} else {
						e[k] = v
					}
					continue
				}
			}
			if creating && (k == "created_at" || k == "updated_at") {
				continue // Kong accepts and ignores timestamps on import
			}
			if !creating && (k == "created_at" || k == "updated_at") {
				continue
			}
			errs.Add(k, "cannot be changed")
			continue
		}
		if f.Kind == Record && !creating && v != nil {
			if old, ok := e[k].(map[string]any); ok {
				if nv, ok := v.(map[string]any); ok {
					v = mergeRecord(old, nv)
				}
			}
		}
		e[k] = v
	}
	for _, f := range t.Fields {
		if f.ReadOnly {
			continue
		}
		v, msg := checkValue(f, e[f.Name])
		if msg != nil {
			errs[f.Name] = msg
			continue
		}
		e[f.Name] = v
	}
	if len(errs) == 0 && t.Check != nil {
		errs.Merge(t.Check(e))
	}
	if len(errs) == 0 && t.Fill != nil {
		t.Fill(e)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return e, nil
}

// MsgNUL is the violation of a string with a NUL character, which Postgres
// cannot store (in text or jsonb).
const MsgNUL = "must not contain the NUL character (\\u0000)"

// hasNUL reports whether a JSON-shaped value has a NUL character in any
// string, object key included, at any depth.
func hasNUL(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.IndexByte(x, 0) >= 0
	case map[string]any:
		for k, e := range x {
			if hasNUL(k) || hasNUL(e) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if hasNUL(e) {
				return true
			}
		}
	}
	return false
}

func mergeRecord(old, patch map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range old {
		out[k] = v
	}
	for k, v := range patch {
		if o, ok := out[k].(map[string]any); ok {
			if p, ok := v.(map[string]any); ok {
				out[k] = mergeRecord(o, p)
				continue
			}
		}
		out[k] = v
	}
	return out
}

func i64(n int64) *int64 { return &n }

// Error makes Errors an error: its Kong message.
func (e Errors) Error() string { return e.Message() }
