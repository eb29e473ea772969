// Package pluginschema is the one definition of a plugin's configuration
// that both sides use: admin-api validates a plugin entity's config with it
// (a violation is a 400 at write time) and the data plane fills defaults and
// checks with it before decoding the config into the plugin's Go type. A
// schema is plain data, so a data plane binary can write its plugins'
// schemas as JSON files (dataplane schemas -out DIR) that admin-api loads
// (ADMIN_PLUGIN_SCHEMAS_DIR).
//
// The field types and checks follow Kong's schema language (string,
// integer, number, boolean, array, set, map, record; one_of, between, gt,
// len_min; entity checks at_least_one_of and conditional) with one
// addition, ordered, for limits that must not decrease along a list of
// fields (rate-limiting's second <= minute <= hour ...).
package pluginschema

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Schema is one plugin's configuration schema.
type Schema struct {
	Name     string  `json:"name"`               // the plugin name, as in the plugin entity
	Priority int     `json:"priority,omitempty"` // informational: the order plugins run in (higher first)
	Fields   []Field `json:"fields"`             // the fields of the entity's config record
	Checks   []Check `json:"entity_checks,omitempty"`
}

// Field types.
const (
	String  = "string"
	Integer = "integer"
	Number  = "number"
	Boolean = "boolean"
	Array   = "array"
	Set     = "set"
	Map     = "map"
	Record  = "record"
)

// Field is one field of a record.
type Field struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Required bool   `json:"required,omitempty"`
	// Default is the JSON value a missing field takes (nil: null).
	Default any      `json:"default,omitempty"`
	OneOf   []string `json:"one_of,omitempty"`  // allowed values (strings; integers by their text)
	Between []int64  `json:"between,omitempty"` // integer or number bounds, both inclusive: [min, max]
	// GreaterThan, when set, is an exclusive lower bound of a number.
	GreaterThan *float64 `json:"gt,omitempty"`
	// LenMin is the shortest string allowed (0: 1, as Kong: an empty
	// string is refused); -1 allows the empty string.
	LenMin   int     `json:"len_min,omitempty"`
	Elements *Field  `json:"elements,omitempty"` // of array, set and map values
	Fields   []Field `json:"fields,omitempty"`   // of record
}

// Check is a check across fields of the config record (field names are
// relative to the config: "second", "redis.host").
type Check struct {
	AtLeastOneOf []string     `json:"at_least_one_of,omitempty"`
	Conditional  *Conditional `json:"conditional,omitempty"`
	// Ordered fields must not decrease in this order where set (nulls are
	// skipped); a violation is reported on config, as Kong's rate-limiting
	// does: "The limit for minute(1.0) cannot be lower than the limit for
	// second(5.0)".
	Ordered []string `json:"ordered,omitempty"`
}

// Conditional requires Then when If equals IfEquals.
type Conditional struct {
	If       string `json:"if_field"`
	IfEquals any    `json:"if_equals"`
	Then     string `json:"then_field"` // required in that case
}

// Errors are the violations of one config, shaped as Kong reports them
// under a plugin entity: "config" maps to the config's field errors
// (field -> message, or Errors of a nested record), "@entity" lists the
// failed entity checks.
type Errors map[string]any

// Gt returns a pointer to v (for Field.GreaterThan).
func Gt(v float64) *float64 { return &v }

// Validate checks a plugin entity's config (JSON-decoded; nil means {})
// and returns it with every field present, defaults filled, integers as
// int64 and numbers as float64; or the violations.
func (s *Schema) Validate(config any) (map[string]any, Errors) {
	if config == nil {
		config = map[string]any{}
	}
	v, msg := check(Field{Type: Record, Fields: s.Fields}, config)
	if msg != nil {
		return nil, Errors{"config": msg}
	}
	cfg := v.(map[string]any)
	errs := Errors{}
	for _, c := range s.Checks {
		switch {
		case len(c.AtLeastOneOf) > 0:
			if !slices.ContainsFunc(c.AtLeastOneOf, func(f string) bool { return get(cfg, f) != nil }) {
				names := make([]string, len(c.AtLeastOneOf))
				for i, f := range c.AtLeastOneOf {
					names[i] = "'config." + f + "'"
				}
				addEntity(errs, "at least one of these fields must be non-empty: "+strings.Join(names, ", "))
			}
		case c.Conditional != nil:
			cd := c.Conditional
			if equal(get(cfg, cd.If), cd.IfEquals) && get(cfg, cd.Then) == nil {
				addEntity(errs, "failed conditional validation given value of field 'config."+cd.If+"'")
				errs["config"] = nested(cd.Then, "required field missing")
			}
		case len(c.Ordered) > 0:
			if msg := ordered(cfg, c.Ordered); msg != "" {
				if _, ok := errs["config"]; !ok {
					errs["config"] = msg
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// Decode validates raw (a plugin entity's config JSON; empty or null means
// {}) and decodes the completed config into out, refusing fields out does
// not have: the data plane's decoding of a plugin config.
func (s *Schema) Decode(raw []byte, out any) error {
	var in any
	if len(raw) > 0 {
		d := json.NewDecoder(strings.NewReader(string(raw)))
		d.UseNumber()
		if err := d.Decode(&in); err != nil {
			return fmt.Errorf("config: %w", err)
		}
	}
	cfg, errs := s.Validate(in)
	if errs != nil {
		return errs
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.DisallowUnknownFields()
	if err := d.Decode(out); err != nil {
		return fmt.Errorf("config of %s does not fit its Go type: %w", s.Name, err)
	}
	return nil
}

// Error is Kong's summary of the violations.
func (e Errors) Error() string {
	var parts []string
	flatten("", map[string]any(e), &parts)
	sort.Strings(parts)
	if len(parts) == 1 {
		return "schema violation (" + parts[0] + ")"
	}
	return fmt.Sprintf("%d schema violations (%s)", len(parts), strings.Join(parts, "; "))
}

func flatten(prefix string, v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, prefix+": "+x)
	case []string:
		for _, m := range x {
			*out = append(*out, prefix+": "+m)
		}
	case Errors:
		flatten(prefix, map[string]any(x), out)
	case map[string]any:
		for k, sub := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, sub, out)
		}
	}
}

func addEntity(e Errors, msg string) {
	list, _ := e["@entity"].([]string)
	e["@entity"] = append(list, msg)
}

// nested turns "a.b" and a message into Errors{"a": Errors{"b": msg}}.
func nested(path, msg string) any {
	parts := strings.Split(path, ".")
	var v any = msg
	for i := len(parts) - 1; i >= 0; i-- {
		v = Errors{parts[i]: v}
	}
	return v
}

func get(cfg map[string]any, path string) any {
	var v any = cfg
	for _, p := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func equal(a, b any) bool {
	if fa, ok := toFloat(a); ok {
		fb, ok := toFloat(b)
		return ok && fa == fb
	}
	return a == b
}

func ordered(cfg map[string]any, fields []string) string {
	for i, lower := range fields {
		v1, ok := toFloat(get(cfg, lower))
		if !ok {
			continue
		}
		for _, upper := range fields[i+1:] {
			if v2, ok := toFloat(get(cfg, upper)); ok && v2 < v1 {
				return fmt.Sprintf("The limit for %s(%.1f) cannot be lower than the limit for %s(%.1f)", upper, v2, lower, v1)
			}
		}
	}
	return ""
}

// check validates v against f; it returns the normalized value or a
// message (a string, or Errors for a record).
func check(f Field, v any) (any, any) {
	if v == nil {
		if f.Required {
			return nil, "required field missing"
		}
		return nil, nil
	}
	switch f.Type {
	case String:
		s, ok := v.(string)
		if !ok {
			return nil, "expected a string"
		}
		if min := f.LenMin; (min == 0 && s == "") || (min > 0 && len(s) < min) {
			return nil, fmt.Sprintf("length must be at least %d", max(min, 1))
		}
		if len(f.OneOf) > 0 && !slices.Contains(f.OneOf, s) {
			return nil, "expected one of: " + strings.Join(f.OneOf, ", ")
		}
	case Integer:
		n, ok := toInt(v)
		if !ok {
			return nil, "expected an integer"
		}
		if len(f.OneOf) > 0 && !slices.Contains(f.OneOf, strconv.FormatInt(n, 10)) {
			return nil, "value must be one of: " + strings.Join(f.OneOf, ", ")
		}
		if len(f.Between) == 2 && (n < f.Between[0] || n > f.Between[1]) {
			return nil, fmt.Sprintf("value should be between %d and %d", f.Between[0], f.Between[1])
		}
		if f.GreaterThan != nil && float64(n) <= *f.GreaterThan {
			return nil, "value must be greater than " + strconv.FormatFloat(*f.GreaterThan, 'f', -1, 64)
		}
		v = n
	case Number:
		x, ok := toFloat(v)
		if !ok {
			return nil, "expected a number"
		}
		if len(f.Between) == 2 && (x < float64(f.Between[0]) || x > float64(f.Between[1])) {
			return nil, fmt.Sprintf("value should be between %d and %d", f.Between[0], f.Between[1])
		}
		if f.GreaterThan != nil && x <= *f.GreaterThan {
			return nil, "value must be greater than " + strconv.FormatFloat(*f.GreaterThan, 'f', -1, 64)
		}
		v = x
	case Boolean:
		if _, ok := v.(bool); !ok {
			return nil, "expected a boolean"
		}
	case Array, Set:
		arr, ok := v.([]any)
		if !ok {
			return nil, "expected " + map[string]string{Array: "an array", Set: "a set"}[f.Type]
		}
		out := make([]any, 0, len(arr))
		for i, el := range arr {
			if el == nil {
				return nil, Errors{strconv.Itoa(i + 1): "required field missing"}
			}
			nv, msg := check(elements(f), el)
			if msg != nil {
				return nil, msg
			}
			if f.Type == Set && slices.ContainsFunc(out, func(o any) bool { return equal(o, nv) }) {
				continue
			}
			out = append(out, nv)
		}
		v = out
	case Map:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "expected a map"
		}
		out := make(map[string]any, len(m))
		for k, el := range m {
			nv, msg := check(elements(f), el)
			if msg != nil {
				return nil, Errors{k: msg}
			}
			out[k] = nv
		}
		v = out
	case Record:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "expected a record"
		}
		sub := Errors{}
		for k := range m {
			if !slices.ContainsFunc(f.Fields, func(sf Field) bool { return sf.Name == k }) {
				sub[k] = "unknown field"
			}
		}
		out := make(map[string]any, len(f.Fields))
		for _, sf := range f.Fields {
			el, present := m[sf.Name]
			if !present {
				el = clone(sf.Default)
			}
			nv, msg := check(sf, el)
			if msg != nil {
				sub[sf.Name] = msg
				continue
			}
			out[sf.Name] = nv
		}
		if len(sub) > 0 {
			return nil, sub
		}
		v = out
	default:
		return nil, "unknown field type " + f.Type
	}
	return v, nil
}

func elements(f Field) Field {
	if f.Elements == nil {
		return Field{Type: String}
	}
	return *f.Elements
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
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x), true
		}
	}
	return 0, false
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	}
	return 0, false
}

// clone deep-copies a JSON-shaped default.
func clone(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = clone(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = clone(e)
		}
		return a
	case []string:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = e
		}
		return a
	}
	return v
}

// Kong is the schema as Kong's GET /schemas/plugins/{name} shows it: the
// plugin entity's fields, config a record of the schema's fields, each
// field an object keyed by its name.
func (s *Schema) Kong() map[string]any {
	checks := []any{}
	for _, c := range s.Checks {
		switch {
		case len(c.AtLeastOneOf) > 0:
			checks = append(checks, map[string]any{"at_least_one_of": prefixed(c.AtLeastOneOf)})
		case c.Conditional != nil:
			checks = append(checks, map[string]any{"conditional": map[string]any{
				"if_field": "config." + c.Conditional.If, "if_match": map[string]any{"eq": c.Conditional.IfEquals},
				"then_field": "config." + c.Conditional.Then, "then_match": map[string]any{"required": true}}})
		case len(c.Ordered) > 0:
			checks = append(checks, map[string]any{"ordered": prefixed(c.Ordered)})
		}
	}
	config := kongField(Field{Type: Record, Required: true, Fields: s.Fields})
	return map[string]any{
		"fields": []any{
			map[string]any{"consumer": map[string]any{"type": "foreign", "reference": "consumers", "eq": nil}},
			map[string]any{"protocols": map[string]any{"type": "set", "required": true, "default": []any{"grpc", "grpcs", "http", "https"},
				"elements": map[string]any{"type": "string", "one_of": []any{"grpc", "grpcs", "http", "https"}}}},
			map[string]any{"config": config},
		},
		"entity_checks": checks,
	}
}

func prefixed(fields []string) []any {
	out := make([]any, len(fields))
	for i, f := range fields {
		out[i] = "config." + f
	}
	return out
}

func kongField(f Field) map[string]any {
	m := map[string]any{"type": f.Type}
	if f.Required {
		m["required"] = true
	}
	if f.Default != nil {
		m["default"] = f.Default
	}
	if len(f.OneOf) > 0 {
		m["one_of"] = f.OneOf
	}
	if len(f.Between) == 2 {
		m["between"] = f.Between
	}
	if f.GreaterThan != nil {
		m["gt"] = *f.GreaterThan
	}
	if f.LenMin > 0 {
		m["len_min"] = f.LenMin
	}
	if f.Type == Array || f.Type == Set || f.Type == Map {
		m["elements"] = kongField(elements(f))
		if f.Type == Map {
			m["keys"] = map[string]any{"type": "string"}
			m["values"] = m["elements"]
			delete(m, "elements")
		}
	}
	if f.Type == Record {
		fs := make([]any, len(f.Fields))
		for i, sf := range f.Fields {
			fs[i] = map[string]any{sf.Name: kongField(sf)}
		}
		m["fields"] = fs
	}
	return m
}

// Parse reads a schema written by encoding/json (a schemas directory
// file) and checks that it is usable.
func Parse(b []byte) (*Schema, error) {
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	d.DisallowUnknownFields()
	var s Schema
	if err := d.Decode(&s); err != nil {
		return nil, err
	}
	if err := s.Check(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Check reports a schema that cannot be used: no name, an unknown field
// type, or a default its own field refuses.
func (s *Schema) Check() error {
	if s.Name == "" {
		return fmt.Errorf("plugin schema without a name")
	}
	if err := checkTypes(s.Fields); err != nil {
		return fmt.Errorf("plugin schema %s: %w", s.Name, err)
	}
	return nil
}

func checkTypes(fs []Field) error {
	for _, f := range fs {
		switch f.Type {
		case String, Integer, Number, Boolean:
		case Array, Set, Map:
			if f.Elements != nil {
				if err := checkTypes([]Field{*f.Elements}); err != nil {
					return err
				}
			}
		case Record:
			if err := checkTypes(f.Fields); err != nil {
				return err
			}
		default:
			return fmt.Errorf("field %q: unknown type %q", f.Name, f.Type)
		}
		if f.Default != nil {
			if _, msg := check(f, f.Default); msg != nil {
				return fmt.Errorf("field %q: default %v: %v", f.Name, f.Default, msg)
			}
		}
	}
	return nil
}
