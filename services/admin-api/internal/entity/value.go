package entity

import (
	"encoding/json"
	"fmt"
	"strings"
)

// checkValue validates v against f and returns the normalized value or a
// message (a string, or Errors for a record).
func checkValue(f Field, v any) (any, any) {
	if v == nil {
		if f.Required {
			return nil, "required field missing"
		}
		if f.Kind == Record && f.Default == nil && len(f.Fields) > 0 && !f.Loose {
			return nil, nil
		}
		return nil, nil
	}
	switch f.Kind {
	case String:
		s, ok := v.(string)
		if !ok {
			return nil, "expected a string"
		}
		if s == "" {
			return nil, "length must be at least 1"
		}
		if len(f.Enum) > 0 && !contains(f.Enum, s) {
			return nil, "expected one of: " + strings.Join(f.Enum, ", ")
		}
	case Integer:
		n, ok := toInt(v)
		if !ok {
			return nil, "expected an integer"
		}
		if len(f.Enum) > 0 && !contains(f.Enum, fmt.Sprint(n)) {
			return nil, "value must be one of: " + strings.Join(f.Enum, ", ")
		}
		if f.Min != nil && f.Max != nil && (n < *f.Min || n > *f.Max) {
			return nil, fmt.Sprintf("value should be between %d and %d", *f.Min, *f.Max)
		}
		if f.Min != nil && n < *f.Min {
			return nil, fmt.Sprintf("value must be greater than %d", *f.Min-1)
		}
		if f.Max != nil && n > *f.Max {
			return nil, fmt.Sprintf("value must be at most %d", *f.Max)
		}
		v = n
	case Number:
		switch x := v.(type) {
		case json.Number:
			fl, err := x.Float64()
			if err != nil {
				return nil, "expected a number"
			}
			v = fl
		case float64:
		case int64:
			v = float64(x)
		default:
			return nil, "expected a number"
		}
	case Boolean:
		if _, ok := v.(bool); !ok {
			return nil, "expected a boolean"
		}
	case Array, Set:
		arr, ok := v.([]any)
		if !ok {
			if f.Kind == Set {
				return nil, "expected a set"
			}
			return nil, "expected an array"
		}
		out := make([]any, 0, len(arr))
		sub := Errors{}
		seen := map[string]bool{}
		for i, el := range arr {
			nv, msg := checkValue(*f.Elem, el)
			if msg == nil && el == nil {
				msg = "required field missing"
			}
			if msg != nil {
				sub[fmt.Sprint(i+1)] = msg
				continue
			}
			if f.Kind == Set {
				k := fmt.Sprint(nv)
				if seen[k] {
					continue
				}
				seen[k] = true
			}
			out = append(out, nv)
		}
		if len(sub) > 0 {
			return nil, firstOf(sub)
		}
		if len(out) == 0 {
			// Kong stores an empty array of a nullable field as null for
			// sets used as route matchers; keep what the client sent.
			return []any{}, nil
		}
		v = out
	case Map:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "expected a map"
		}
		for k, el := range m {
			nv, msg := checkValue(*f.Elem, el)
			if msg == nil && el == nil {
				msg = "required field missing"
			}
			if msg != nil {
				return nil, fmt.Sprintf("%s: %v", k, msg)
			}
			m[k] = nv
		}
	case Record:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "expected a record"
		}
		if len(f.Fields) == 0 {
			break
		}
		sub := Errors{}
		out := map[string]any{}
		for k := range m {
			if _, ok := fieldOf(f.Fields, k); !ok && !f.Loose {
				sub[k] = "unknown field"
			}
		}
		for _, sf := range f.Fields {
			el, present := m[sf.Name]
			if !present {
				el = cloneJSON(sf.Default)
			}
			nv, msg := checkValue(sf, el)
			if msg != nil {
				sub[sf.Name] = msg
				continue
			}
			out[sf.Name] = nv
		}
		if f.Loose {
			for k, el := range m {
				if _, ok := out[k]; !ok {
					out[k] = el
				}
			}
		}
		if len(sub) > 0 {
			return nil, sub
		}
		v = out
	case Foreign:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "expected a record"
		}
		for k := range m {
			if k != "id" && k != "name" && k != "username" {
				return nil, Errors{k: "unknown field"}
			}
		}
		id, ok := m["id"]
		if !ok {
			return nil, Errors{"id": "missing primary key"}
		}
		if msg := checkUUID(id); msg != "" {
			return nil, Errors{"id": msg}
		}
		v = map[string]any{"id": id}
	case JSON:
	}
	if f.Check != nil {
		if msg := f.Check(v); msg != "" {
			return nil, msg
		}
	}
	return v, nil
}

func firstOf(e Errors) any {
	if len(e) == 1 {
		for _, v := range e {
			return v
		}
	}
	return e
}

func fieldOf(fs []Field, name string) (Field, bool) {
	for _, f := range fs {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	case int64:
		return x, true
	case int:
		return int64(x), true
	case float64:
		if x == float64(int64(x)) {
			return int64(x), true
		}
	}
	return 0, false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// cloneJSON deep-copies a JSON-shaped value.
func cloneJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = cloneJSON(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = cloneJSON(e)
		}
		return a
	case []string:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = e
		}
		return a
	default:
		return v
	}
}
