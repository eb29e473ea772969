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
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/shared/schema"
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
		var y any
		if err := yaml.Unmarshal(raw, &y); err != nil {
			return nil, invalid("@body", "cannot parse YAML: "+err.Error())
		}
		b, err := json.Marshal(y)
		if err != nil {
			return nil, invalid("@body", "cannot convert YAML: "+err.Error())
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
	Type   *entity.Type
	In     map[string]any
	Path   string
	parent *Item
	field  string
	ID     string
	Entity map[string]any // normalized
}

// Flatten lists the declared entities, parents before children, in the
// order of entity.Types.
func Flatten(doc map[string]any) ([]*Item, error) {
	errs := &Error{Fields: map[string]any{}}
	if fv, _ := doc["_format_version"].(string); !slices.Contains(FormatVersions, fv) {
		errs.Fields["_format_version"] = "expected one of: " + strings.Join(FormatVersions, ", ")
	} else {
		migrate(doc)
	}
	byType := map[string][]*Item{}
	var walk func(t *entity.Type, list any, path string, parent *Item, field string)
	walk = func(t *entity.Type, list any, path string, parent *Item, field string) {
		arr, ok := list.([]any)
		if !ok {
			if list != nil {
				errs.Fields[path] = "expected an array"
			}
			return
		}
		for i, el := range arr {
			p := fmt.Sprintf("%s[%d]", path, i)
			if s, ok := el.(string); ok && t == entity.SNI {
				el = map[string]any{"name": s}
			}
			m, ok := el.(map[string]any)
			if !ok {
				errs.Fields[p] = "expected a record"
				continue
			}
			if msg := extraAttributes(m); msg != nil {
				errs.Fields[p] = msg
				continue
			}
			it := &Item{Type: t, In: m, Path: p, parent: parent, field: field}
			byType[t.Name] = append(byType[t.Name], it)
			for _, r := range schema.Children(t.Name) {
				if sub, ok := m[r.Child]; ok {
					delete(m, r.Child)
					ct, _ := entity.Lookup(r.From)
					walk(ct, sub, p+"."+r.Child, it, r.Field)
				}
			}
		}
	}
	for k, v := range doc {
		switch k {
		case "_format_version", "_transform", "_workspace", "_info":
			continue
		case "_comment", "_ignore":
			if msg := extraAttributes(map[string]any{k: v}); msg != nil {
				errs.Fields[k] = msg[k]
			}
			continue
		}
		t, ok := entity.Lookup(k)
		if !ok {
			errs.Fields[k] = "unknown field"
			continue
		}
		walk(t, v, k, nil, "")
	}
	if len(errs.Fields) > 0 {
		return nil, errs
	}
	var out []*Item
	for _, t := range entity.Types {
		list := byType[t.Name]
		sort.SliceStable(list, func(i, j int) bool { return list[i].Path < list[j].Path })
		out = append(out, list...)
	}
	return out, nil
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
// natural key, else from a name-based UUID.
func Resolve(items []*Item, cur Current, now int64) error {
	errs := &Error{Fields: map[string]any{}}
	byID := map[string]map[string]*Item{}
	byName := map[string]map[string]*Item{}
	curByKey := map[string]map[string]string{}
	for typ, ents := range cur {
		t, _ := entity.Lookup(typ)
		curByKey[typ] = map[string]string{}
		for id, e := range ents {
			if k := naturalKey(t, e); k != "" {
				curByKey[typ][k] = id
			}
		}
	}
	for _, it := range items {
		t := it.Type
		if byID[t.Name] == nil {
			byID[t.Name], byName[t.Name] = map[string]*Item{}, map[string]*Item{}
		}
		// Foreign references: the parent, or a name or id in the file.
		if it.parent != nil {
			it.In[it.field] = map[string]any{"id": it.parent.ID}
		}
		for _, f := range t.Foreigns() {
			if it.parent != nil && f.Name == it.field {
				continue
			}
			v, ok := it.In[f.Name]
			if !ok || v == nil {
				continue
			}
			rt, _ := entity.Lookup(f.Ref.To)
			var target *Item
			switch r := v.(type) {
			case string:
				if t := byID[rt.Name][r]; t != nil {
					target = t
				} else {
					target = byName[rt.Name][r]
				}
			case map[string]any:
				if id, ok := r["id"].(string); ok {
					target = byID[rt.Name][id]
				} else if rt.Endpoint != "" {
					if n, ok := r[rt.Endpoint].(string); ok {
						target = byName[rt.Name][n]
					}
				}
			}
			if target == nil {
				errs.Fields[it.Path] = entity.Errors{f.Name: fmt.Sprintf("references a %s entity that is not in the configuration: %v", rt.Name, jsonString(v))}
				continue
			}
			it.In[f.Name] = map[string]any{"id": target.ID}
		}
		if _, bad := errs.Fields[it.Path]; bad {
			continue
		}
		// A credential declared without a key: its id follows from its
		// consumer and place in the file, and it keeps the key stored
		// with that id (a new random one otherwise).
		if t == entity.KeyAuth && it.In["id"] == nil && it.In["key"] == nil {
			id := uuid.NewSHA1(namespace, []byte(t.Name+"|no key|"+it.Path+"|"+jsonString(it.In))).String()
			it.In["id"] = id
			if old, ok := cur[t.Name][id]; ok && old["key"] != nil {
				it.In["key"] = old["key"]
			}
		}
		// Id.
		var probe map[string]any
		if id, ok := it.In["id"].(string); ok {
			it.ID = id
		} else {
			var perrs entity.Errors
			probe, perrs = entity.Normalize(t, it.In, nil, map[string]any{"id": uuid.Nil.String(), "created_at": now, "updated_at": now})
			if perrs != nil {
				errs.Fields[it.Path] = perrs
				continue
			}
			k := naturalKey(t, probe)
			if id, ok := curByKey[t.Name][k]; ok && k != "" {
				it.ID = id
			} else {
				seed := k
				if seed == "" || t.Endpoint == "" && t != entity.Target && t != entity.Plugin && t != entity.Consumer {
					seed = it.Path + "|" + jsonString(it.In)
				}
				it.ID = uuid.NewSHA1(namespace, []byte(t.Name+"|"+seed)).String()
			}
		}
		if byID[t.Name][it.ID] != nil {
			errs.Fields[it.Path] = entity.Errors{"id": "uniqueness violation: entities of type '" + t.Name + "' with id '" + it.ID + "' declared twice"}
			continue
		}
		byID[t.Name][it.ID] = it
		if t.Endpoint != "" {
			if n, ok := it.In[t.Endpoint].(string); ok {
				if byName[t.Name][n] != nil {
					errs.Fields[it.Path] = entity.Errors{t.Endpoint: "uniqueness violation: '" + n + "' declared twice"}
					continue
				}
				byName[t.Name][n] = it
			}
		}
		keep := map[string]any{"id": it.ID, "created_at": now, "updated_at": now}
		if old, ok := cur[t.Name][it.ID]; ok {
			keep["created_at"], keep["updated_at"] = old["created_at"], old["updated_at"]
		}
		_, hasCreated := it.In["created_at"]
		_, hasUpdated := it.In["updated_at"]
		if probe != nil && !hasCreated && !hasUpdated {
			// Normalizing the same input again would give the probe with
			// the kept fields (which no check reads) set.
			for k, v := range keep {
				probe[k] = v
			}
			it.Entity = probe
			continue
		}
		in := map[string]any{}
		for k, v := range it.In {
			if k != "id" && k != "created_at" && k != "updated_at" {
				in[k] = v
			}
		}
		e, nerrs := entity.Normalize(t, in, nil, keep)
		if nerrs != nil {
			errs.Fields[it.Path] = nerrs
			continue
		}
		it.Entity = e
	}
	if len(errs.Fields) > 0 {
		return errs
	}
	return nil
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
