package api

import (
	"encoding/json"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
)

// parseForm reads an application/x-www-form-urlencoded body the way Kong's
// Admin API does: "a.b=v" nests, "paths[]=/x" or a repeated key makes an
// array, and values are typed by the entity's schema ("port=80" is a
// number, "strip_path=false" a boolean).
func parseForm(raw []byte, t *entity.Type) (map[string]any, error) {
	vals, err := url.ParseQuery(string(raw))
	if err != nil {
		return nil, badBody("Cannot parse form body")
	}
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := map[string]any{}
	for _, k := range keys {
		list := vals[k]
		isList := strings.HasSuffix(k, "[]")
		k = strings.TrimSuffix(k, "[]")
		if i := strings.IndexByte(k, '['); i > 0 && strings.HasSuffix(k, "]") {
			k = k[:i] // paths[1]=/a
			isList = true
		}
		path := strings.Split(k, ".")
		var f *entity.Field
		if t != nil {
			if tf, ok := t.Field(path[0]); ok {
				f = &tf
			}
			for _, xf := range t.Extra { // a certificate's snis
				if xf.Name == path[0] {
					f = &xf
				}
			}
		}
		var v any
		switch {
		case f != nil && len(path) == 1 && (f.Kind == entity.Array || f.Kind == entity.Set):
			arr := make([]any, len(list))
			for i, s := range list {
				arr[i] = typed(f.Elem, s)
			}
			v = arr
		case isList || len(list) > 1:
			arr := make([]any, len(list))
			for i, s := range list {
				arr[i] = typed(nil, s)
			}
			v = arr
		case f != nil && len(path) == 1:
			v = typed(f, list[0])
		default:
			v = typed(nil, list[0])
		}
		m := out
		for _, p := range path[:len(path)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		m[path[len(path)-1]] = v
	}
	return out, nil
}

// typed converts a form value to the field's JSON type, or guesses one for
// fields without a known schema (plugin config).
func typed(f *entity.Field, s string) any {
	kind := entity.JSON
	if f != nil {
		kind = f.Kind
	}
	switch kind {
	case entity.String:
		return s
	case entity.Integer, entity.Number:
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			return json.Number(s)
		}
		return s
	case entity.Boolean:
		if b, err := strconv.ParseBool(s); err == nil {
			return b
		}
		return s
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return json.Number(s)
	}
	if s == "true" || s == "false" {
		return s == "true"
	}
	return s
}
