package entity

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/deltaplane/deltaplane/shared/pluginschema"
)

var pluginKeep = map[string]any{"id": "11111111-2222-4333-8444-555555555555", "created_at": int64(1), "updated_at": int64(1)}

// TestRateLimitingLimitsInOrder: a limit of a longer period lower than one
// of a shorter period is refused as Kong refuses it.
func TestRateLimitingLimitsInOrder(t *testing.T) {
	cases := []struct{ config, want string }{
		{`{"second":5,"minute":1}`, "schema violation (config: The limit for minute(1.0) cannot be lower than the limit for second(5.0))"},
		{`{"minute":100,"hour":50,"day":1000}`, "schema violation (config: The limit for hour(50.0) cannot be lower than the limit for minute(100.0))"},
		{`{"hour":10,"year":2}`, "schema violation (config: The limit for year(2.0) cannot be lower than the limit for hour(10.0))"},
		{`{"second":1,"minute":1,"hour":60}`, ""},
	}
	for _, c := range cases {
		in := obj(t, `{"name":"rate-limiting","config":`+c.config+`}`)
		_, errs := Normalize(Plugin, in, nil, pluginKeep)
		got := ""
		if len(errs) > 0 {
			got = errs.Message()
		}
		if got != c.want {
			t.Errorf("config %s: got %q, want %q", c.config, got, c.want)
		}
	}
}

// TestLoadPluginSchemas: a schemas directory as a data plane writes it adds
// its custom plugins; a built-in plugin's identical schema is skipped; a
// built-in redefined or a malformed file is an error.
func TestLoadPluginSchemas(t *testing.T) {
	write := func(dir, name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	builtin, _ := json.Marshal(pluginschema.KeyAuth)
	write(dir, "key-auth.json", string(builtin))
	write(dir, "load-test.json", `{"name":"load-test","fields":[{"name":"n","type":"integer","default":1,"between":[1,9]}]}`)
	names, err := LoadPluginSchemas(dir)
	if err != nil || len(names) != 1 || names[0] != "load-test" {
		t.Fatalf("names %v, err %v", names, err)
	}
	in := obj(t, `{"name":"load-test","config":{"n":10}}`)
	if _, errs := Normalize(Plugin, in, nil, pluginKeep); errs.Message() != "schema violation (config.n: value should be between 1 and 9)" {
		t.Fatalf("errors %v", errs)
	}
	if _, ok := PluginSchemas["load-test"]; !ok || !slices.Contains(PluginNames(), "load-test") {
		t.Fatal("load-test not listed")
	}
	for name, body := range map[string]string{
		"rate-limiting.json": `{"name":"rate-limiting","fields":[]}`,
		"bad.json":           `{"name":"bad","fields":[{"name":"x","type":"text"}]}`,
		"again.json":         `{"name":"load-test","fields":[]}`,
	} {
		d := t.TempDir()
		write(d, name, body)
		if _, err := LoadPluginSchemas(d); err == nil {
			t.Errorf("%s %s accepted", name, body)
		}
	}
}
