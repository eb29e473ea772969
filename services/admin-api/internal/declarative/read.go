package declarative

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/shared/schema"
)

// Read is Parse and Flatten without decoding the entities: it checks the
// document (JSON, or YAML converted to JSON first, as Parse) and lists
// the declared entities, parents before children, as Flatten does, each
// holding only its place in the document's JSON (no map). An item's input
// (Item.In) is decoded when the Resolver resolves it, so a caller that
// drops an item's maps once it is planned holds one entity's maps at a
// time, not the configuration's. A YAML document is decoded whole once
// (to convert it), then released.
func Read(raw []byte) ([]*Item, error) {
	doc, err := documentJSON(raw)
	if err != nil {
		return nil, err
	}
	return flattenJSON(doc)
}

// documentJSON returns the document in raw as the bytes of one JSON
// object (a sub-slice of raw for JSON), unwrapping {"config": "<doc>"},
// with Parse's errors.
func documentJSON(raw []byte) ([]byte, error) {
	if !utf8.Valid(raw) {
		return nil, invalid("@body", "invalid UTF-8")
	}
	trimmed := bytes.TrimSpace(raw)
	var doc []byte
	if len(trimmed) > 0 && trimmed[0] == '{' {
		doc = trimmed
		if !json.Valid(doc) {
			// The error, or the first value when more follows (which
			// Parse's decoder accepted too).
			d := json.NewDecoder(bytes.NewReader(trimmed))
			var skip json.RawMessage
			if err := d.Decode(&skip); err != nil {
				return nil, invalid("@body", "cannot parse JSON: "+err.Error())
			}
			doc = trimmed[:d.InputOffset()]
		}
	} else {
		b, err := yamlToJSON(raw)
		if err != nil {
			return nil, err
		}
		doc = b
	}
	if len(doc) == 0 || doc[0] != '{' {
		return nil, invalid("@body", "expected an object")
	}
	members, err := objectMembers(doc)
	if err != nil {
		return nil, invalid("@body", err.Error())
	}
	if c, ok := members["config"]; ok && len(members) == 1 && len(c) > 0 && c[0] == '"' {
		var s string
		if err := json.Unmarshal(c, &s); err != nil {
			return nil, invalid("@body", err.Error())
		}
		return documentJSON([]byte(s))
	}
	return doc, nil
}

// objectMembers returns the members of the JSON object obj (valid JSON,
// see documentJSON) as sub-slices of obj, the last of a repeated key
// winning (as decoding into a map does). It scans obj once, copying
// nothing but the keys.
func objectMembers(obj []byte) (map[string][]byte, error) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, errors.New("expected an object")
	}
	out := map[string][]byte{}
	i = skipSpace(obj, i+1)
	for i < len(obj) && obj[i] != '}' {
		end := skipValue(obj, i) // the key
		var k string
		if bytes.IndexByte(obj[i+1:end-1], '\\') < 0 {
			k = string(obj[i+1 : end-1])
		} else if err := json.Unmarshal(obj[i:end], &k); err != nil {
			return nil, err
		}
		i = skipSpace(obj, end)
		i = skipSpace(obj, i+1) // ':'
		end = skipValue(obj, i)
		out[k] = obj[i:end]
		i = skipSpace(obj, end)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return out, nil
}

// arrayElements returns the elements of the JSON array arr (valid JSON)
// as sub-slices of arr, scanning it once.
func arrayElements(arr []byte) ([][]byte, error) {
	i := skipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return nil, errors.New("expected an array")
	}
	var out [][]byte
	i = skipSpace(arr, i+1)
	for i < len(arr) && arr[i] != ']' {
		end := skipValue(arr, i)
		out = append(out, arr[i:end])
		i = skipSpace(arr, end)
		if i < len(arr) && arr[i] == ',' {
			i = skipSpace(arr, i+1)
		}
	}
	return out, nil
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value that starts at b[i] (b is
// valid JSON: encoding/json checked it): a string to its closing quote,
// an object or array to its closing bracket, anything else to the next
// delimiter.
func skipValue(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i // the end of a scalar before its container's end
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r', ':':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

// decodeJSON decodes one JSON value as Parse does (numbers as
// json.Number).
func decodeJSON(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// flattenJSON is Flatten over a document's JSON (see Read).
func flattenJSON(doc []byte) ([]*Item, error) {
	top, err := objectMembers(doc)
	if err != nil {
		return nil, invalid("@body", err.Error())
	}
	errs := &Error{Fields: map[string]any{}}
	var fv string
	if v, ok := top["_format_version"]; ok {
		_ = json.Unmarshal(v, &fv)
	}
	old := fv == "1.1" || fv == "2.1"
	if !slices.Contains(FormatVersions, fv) {
		errs.Fields["_format_version"] = "expected one of: " + strings.Join(FormatVersions, ", ")
		old = false
	}
	byType := map[string][]*Item{}
	var walk func(t *entity.Type, list []byte, path string, parent *Item, field string)
	walk = func(t *entity.Type, list []byte, path string, parent *Item, field string) {
		if bytes.Equal(list, []byte("null")) {
			return
		}
		arr, err := arrayElements(list)
		if err != nil {
			errs.Fields[path] = "expected an array"
			return
		}
		for i, el := range arr {
			p := fmt.Sprintf("%s[%d]", path, i)
			if el[0] == '"' && t == entity.SNI {
				var s string
				_ = json.Unmarshal(el, &s)
				byType[t.Name] = append(byType[t.Name], &Item{Type: t, In: map[string]any{"name": s}, Path: p, parent: parent, field: field})
				continue
			}
			if el[0] != '{' {
				errs.Fields[p] = "expected a record"
				continue
			}
			members, err := objectMembers(el)
			if err != nil {
				errs.Fields[p] = "expected a record"
				continue
			}
			extra := map[string]any{}
			for _, k := range []string{"_comment", "_ignore"} {
				if v, ok := members[k]; ok {
					var x any
					_ = decodeJSON(v, &x)
					extra[k] = x
				}
			}
			if msg := extraAttributes(extra); msg != nil {
				errs.Fields[p] = msg
				continue
			}
			it := &Item{Type: t, raw: el, Path: p, parent: parent, field: field}
			// migrate: the paths of routes, top-level and nested in
			// top-level services.
			it.migrate = old && t == entity.Route && (parent == nil || parent.Type == entity.Service && parent.parent == nil)
			byType[t.Name] = append(byType[t.Name], it)
			for _, r := range schema.Children(t.Name) {
				if sub, ok := members[r.Child]; ok {
					ct, _ := entity.Lookup(r.From)
					walk(ct, sub, p+"."+r.Child, it, r.Field)
				}
			}
		}
	}
	for k, v := range top {
		switch k {
		case "_format_version", "_transform", "_workspace", "_info":
			continue
		case "_comment", "_ignore":
			var x any
			_ = decodeJSON(v, &x)
			if msg := extraAttributes(map[string]any{k: x}); msg != nil {
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

// load decodes the item's input from its JSON (Read): the entity's own
// fields, without its nested children and Kong's declarative-only
// attributes, the paths of a "1.1" or "2.1" route migrated. It reports
// whether it decoded (false when In was already there).
func (it *Item) load() (bool, error) {
	if it.In != nil || it.raw == nil {
		return false, nil
	}
	var m map[string]any
	if err := decodeJSON(it.raw, &m); err != nil {
		return false, err
	}
	for _, r := range schema.Children(it.Type.Name) {
		delete(m, r.Child)
	}
	delete(m, "_comment")
	delete(m, "_ignore")
	if it.migrate {
		paths, _ := m["paths"].([]any)
		for i, p := range paths {
			if s, ok := p.(string); ok {
				paths[i] = migratePath(s)
			}
		}
	}
	it.In, it.raw = m, nil
	return true, nil
}

// Release drops the item's maps (its input and normalized entity) once
// it is planned; its id stays (later items may reference it).
func (it *Item) Release() { it.In, it.Entity, it.raw = nil, nil, nil }
