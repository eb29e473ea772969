package pluginschema

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func decode(t *testing.T, s string) any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name, schema, config string
		want                 string // Errors.Error(), or "" for valid
	}{
		{"key-auth defaults", "key-auth", `{}`, ""},
		{"unknown field", "key-auth", `{"nope":1}`, "schema violation (config.nope: unknown field)"},
		{"wrong type", "key-auth", `{"key_names":"apikey"}`, "schema violation (config.key_names: expected an array)"},
		{"no limit", "rate-limiting", `{}`, "schema violation (@entity: at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year')"},
		{"limits in order", "rate-limiting", `{"second":5,"minute":5,"hour":100}`, ""},
		{"minute below second", "rate-limiting", `{"second":5,"minute":1}`, "schema violation (config: The limit for minute(1.0) cannot be lower than the limit for second(5.0))"},
		{"day below hour, minute unset", "rate-limiting", `{"hour":10,"day":3}`, "schema violation (config: The limit for day(3.0) cannot be lower than the limit for hour(10.0))"},
		{"not positive", "rate-limiting", `{"minute":0}`, "schema violation (config.minute: value must be greater than 0)"},
		{"redis without host", "rate-limiting", `{"minute":1,"policy":"redis"}`, "2 schema violations (@entity: failed conditional validation given value of field 'config.policy'; config.redis.host: required field missing)"},
		{"port out of range", "rate-limiting", `{"minute":1,"redis":{"port":70000}}`, "schema violation (config.redis.port: value should be between 0 and 65535)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, errs := Builtin()[c.schema].Validate(decode(t, c.config))
			got := ""
			if errs != nil {
				got = errs.Error()
			}
			if got != c.want {
				t.Fatalf("got %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestDefaultsFilled(t *testing.T) {
	cfg, errs := RateLimiting.Validate(decode(t, `{"minute":3}`))
	if errs != nil {
		t.Fatal(errs)
	}
	if cfg["policy"] != "local" || cfg["minute"] != float64(3) || cfg["second"] != nil || cfg["redis"].(map[string]any)["port"] != int64(6379) {
		t.Fatalf("config %v", cfg)
	}
}

// TestFileRoundTrip: a schema written as JSON (what dataplane schemas
// writes) and parsed back (what admin-api loads) validates the same way.
func TestFileRoundTrip(t *testing.T) {
	for name, s := range Builtin() {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, in := range []string{`{}`, `{"minute":3,"second":1}`, `{"minute":1,"second":3}`, `{"key_names":["k"]}`, `{"x":1}`} {
			a, ea := s.Validate(decode(t, in))
			b, eb := back.Validate(decode(t, in))
			if !reflect.DeepEqual(a, b) || (ea == nil) != (eb == nil) || (ea != nil && ea.Error() != eb.Error()) {
				t.Fatalf("%s %s: %v %v, after the round trip %v %v", name, in, a, ea, b, eb)
			}
		}
	}
}

func TestDecodeIntoGoType(t *testing.T) {
	type cfg struct {
		KeyNames []string `json:"key_names"`
	}
	var c cfg
	if err := KeyAuth.Decode([]byte(`{"key_names":["x"]}`), &c); err == nil {
		t.Fatal("a Go type without every schema field must be refused")
	}
	if err := KeyAuth.Decode([]byte(`{"key_names":[1]}`), &c); err == nil || !strings.Contains(err.Error(), "expected a string") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseRefusesBadSchemas(t *testing.T) {
	for _, in := range []string{`{"fields":[]}`, `{"name":"x","fields":[{"name":"a","type":"nope"}]}`, `{"name":"x","fields":[{"name":"a","type":"integer","default":"s"}]}`, `{"name":"x","fields":[],"extra":1}`} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("Parse(%s) accepted", in)
		}
	}
}
