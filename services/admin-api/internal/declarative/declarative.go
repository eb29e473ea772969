// Package declarative reads and writes Kong's declarative configuration
// format (_format_version "3.0", and "1.1" and "2.1" migrated to it as Kong
// does; JSON or YAML; children nested under their
// parents by the child keys of the entity graph in shared/schema) and
// plans the changes that turn the stored configuration into a declared
// one. Reading: Parse (JSON or YAML), Flatten (the declared entities,
// parents first), Resolve (ids and foreign references, against the stored
// configuration; each entity normalized). Planning: Plan (inserts, updates
// and deletes; pure, tested without a database). Writing: Exporter (stored
// entities as a flat YAML document, written entity by entity as they are
// given; Export in memory). The package touches no store: reading
// the stored configuration and applying the changes in one transaction is
// app.App.ReplaceConfig's.
package declarative

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/google/uuid"
	"gopkg.in/yaml.v3"
)

// FormatVersion is the declarative format deltaplane reads and writes.
const FormatVersion = "3.0"

// namespace seeds the ids of declared entities that carry none, so that
// importing the same file twice gives the same ids.
var namespace = uuid.MustParse("5b0c3a2e-8f1d-4c59-9a57-6d656c746170")

// Error is an invalid declarative configuration; Fields maps an entity's
// path in the file ("services[0].routes[1]") to its violations.
type Error struct {
	Fields map[string]any
}

func (e *Error) Error() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		switch v := e.Fields[k].(type) {
		case entity.Errors:
			parts = append(parts, k+": "+v.Message())
		default:
			parts = append(parts, fmt.Sprintf("%s: %v", k, v))
		}
	}
	return "declarative config is invalid: " + strings.Join(parts, "; ")
}

func invalid(path string, msg any) *Error { return &Error{Fields: map[string]any{path: msg}} }

// Parse reads a declarative configuration in JSON or YAML. A JSON object
// whose only key is "config" holding a string is unwrapped (the shape of
// GET /config).
func Parse(raw []byte) (map[string]any, error) {
	var v any
	if !utf8.Valid(raw) {
		return nil, invalid("@body", "invalid UTF-8")
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		d := json.NewDecoder(bytes.NewReader(trimmed))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			return nil, invalid("@body", "cannot parse JSON: "+err.Error())
		}
	} else {
		b, err := yamlToJSON(raw)
		if err != nil {
			return nil, err
		}
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if err := d.Decode(&v); err != nil {
			return nil, invalid("@body", err.Error())
		}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, invalid("@body", "expected an object")
	}
	if s, ok := m["config"].(string); ok && len(m) == 1 {
		return Parse([]byte(s))
	}
	return m, nil
}

// Item is one declared entity.
type Item struct {
	Type    *entity.Type
	In      map[string]any // decoded from raw when resolved (see Read)
	Path    string
	parent  *Item
	field   string
	ID      string
	Entity  map[string]any // normalized
	raw     []byte         // its JSON in the document, until decoded
	migrate bool           // a "1.1" or "2.1" route: its paths are migrated when decoded
}

// Flatten lists the declared entities, parents before children, in the
// order of entity.Types. It is Read's flattening over doc encoded as JSON:
// the items' inputs are decoded when they are resolved.
func Flatten(doc map[string]any) ([]*Item, error) {
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, invalid("@body", err.Error())
	}
	return flattenJSON(b)
}

// extraAttributes checks and removes Kong's declarative-only attributes of
// an entity (and of the document): _comment, a string, and _ignore, an
// array of anything; neither is stored.
func extraAttributes(m map[string]any) entity.Errors {
	errs := entity.Errors{}
	if v, ok := m["_comment"]; ok {
		if _, ok := v.(string); !ok {
			errs.Add("_comment", "expected a string")
		}
		delete(m, "_comment")
	}
	if v, ok := m["_ignore"]; ok {
		if _, ok := v.([]any); !ok {
			errs.Add("_ignore", "expected an array")
		}
		delete(m, "_ignore")
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// Current is the stored configuration: per type, entity by id.
type Current map[string]map[string]map[string]any

// naturalKey identifies an entity without its id.
func naturalKey(t *entity.Type, e map[string]any) string {
	ref := func(f string) string {
		if m, ok := e[f].(map[string]any); ok {
			s, _ := m["id"].(string)
			return s
		}
		return ""
	}
	str := func(f string) string { s, _ := e[f].(string); return s }
	switch t {
	case entity.Target:
		tg, _ := entity.NormalizeTarget(str("target"))
		return ref("upstream") + "|" + tg
	case entity.Plugin:
		if s := str("instance_name"); s != "" {
			return "instance:" + s
		}
		return str("name") + "|" + ref("route") + "|" + ref("service") + "|" + ref("consumer")
	case entity.Consumer:
		if s := str("username"); s != "" {
			return "u:" + s
		}
		return "c:" + str("custom_id")
	case entity.Certificate, entity.CACertificate:
		return strings.TrimSpace(str("cert"))
	}
	if t.Endpoint != "" {
		return str(t.Endpoint)
	}
	return ""
}

// Resolve gives every item its id and foreign references, then normalizes
// it. Ids come from the file, else from the stored entity with the same
// natural key, else from a name-based UUID. It is a Resolver over cur
// given every item in turn.
func Resolve(items []*Item, cur Current, now int64) error {
	r := NewResolver(IndexOf(cur), now)
	for _, it := range items {
		r.Resolve(it)
	}
	return r.Err()
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// exported is an entity as Export writes it.
func exported(t *entity.Type, e map[string]any) map[string]any {
	out := make(map[string]any, len(e))
	for k, v := range e {
		f, known := t.Field(k)
		switch {
		case !known:
			out[k] = v
		case v == nil && f.Default == nil:
		case f.Kind == entity.Foreign:
			if m, ok := v.(map[string]any); ok && m["id"] != nil {
				v = m["id"]
			}
			out[k] = v
		default:
			out[k] = v
		}
	}
	return out
}

// plain turns json.Number into int64 or float64 for YAML.
func plain(v any) any {
	switch x := v.(type) {
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = plain(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = plain(e)
		}
		return a
	case []map[string]any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = plain(e)
		}
		return a
	}
	return v
}

// yamlToJSON converts a YAML body to JSON, with the errors a client sees.
func yamlToJSON(raw []byte) ([]byte, error) {
	var y any
	if err := yaml.Unmarshal(raw, &y); err != nil {
		return nil, invalid("@body", "cannot parse YAML: "+err.Error())
	}
	b, err := json.Marshal(y)
	if err != nil {
		return nil, invalid("@body", "cannot convert YAML: "+err.Error())
	}
	return b, nil
}
