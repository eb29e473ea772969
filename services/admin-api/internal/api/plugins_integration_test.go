//go:build integration

package api_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/shared/pluginschema"
)

var addCustomOnce sync.Once

// customSchema is a custom plugin's schema as a data plane would write it.
func addCustomSchema(t *testing.T) {
	addCustomOnce.Do(func() {
		err := entity.AddPluginSchemas(&pluginschema.Schema{Name: "api-test-custom", Fields: []pluginschema.Field{
			{Name: "header", Type: pluginschema.String, Default: "X-Test"},
			{Name: "ttl", Type: pluginschema.Integer, Between: []int64{1, 60}, Default: int64(5)},
			{Name: "tags", Type: pluginschema.Set, Elements: &pluginschema.Field{Type: pluginschema.String}},
		}})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestPluginSchemasAndValidation: /plugins/enabled and /schemas/plugins/{name}
// in Kong's shapes; a bad built-in or custom config and an unknown name
// are 400s in Kong's error shape.
func TestPluginSchemasAndValidation(t *testing.T) {
	addCustomSchema(t)
	e := setup(t, false)

	code, body := e.do(t, "GET", "/plugins/enabled", "")
	if code != 200 || fmt.Sprint(body["enabled_plugins"]) != "[api-test-custom key-auth rate-limiting]" {
		t.Fatalf("/plugins/enabled = %d %v", code, body)
	}
	code, body = e.do(t, "GET", "/schemas/plugins/rate-limiting", "")
	if code != 200 {
		t.Fatalf("/schemas/plugins/rate-limiting = %d %v", code, body)
	}
	fields := body["fields"].([]any)
	cfg := fields[len(fields)-1].(map[string]any)["config"].(map[string]any)
	if cfg["type"] != "record" || !strings.Contains(fmt.Sprint(cfg["fields"]), "minute:map[gt:0 type:number]") {
		t.Fatalf("config record = %v", cfg)
	}
	if code, body = e.do(t, "GET", "/schemas/plugins/nope", ""); code != 404 || body["message"] != "No plugin named 'nope'" {
		t.Fatalf("/schemas/plugins/nope = %d %v", code, body)
	}

	cases := []struct {
		name, body string
		message    string
		fields     string // fmt of the fields object
	}{
		{"rate-limiting limits out of order", `{"name":"rate-limiting","config":{"second":5,"minute":1}}`,
			"schema violation (config: The limit for minute(1.0) cannot be lower than the limit for second(5.0))",
			"map[config:The limit for minute(1.0) cannot be lower than the limit for second(5.0)]"},
		{"unknown plugin", `{"name":"nope"}`,
			"schema violation (name: plugin 'nope' not enabled; add it to the 'plugins' configuration property)",
			"map[name:plugin 'nope' not enabled; add it to the 'plugins' configuration property]"},
		{"custom plugin, value out of range", `{"name":"api-test-custom","config":{"ttl":99}}`,
			"schema violation (config.ttl: value should be between 1 and 60)", "map[config:map[ttl:value should be between 1 and 60]]"},
		{"custom plugin, unknown field", `{"name":"api-test-custom","config":{"nope":true}}`,
			"schema violation (config.nope: unknown field)", "map[config:map[nope:unknown field]]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := e.do(t, "POST", "/plugins", c.body)
			if code != 400 || body["code"] != float64(2) || body["name"] != "schema violation" || body["message"] != c.message || fmt.Sprint(body["fields"]) != c.fields {
				t.Fatalf("POST /plugins %s = %d %v", c.body, code, body)
			}
		})
	}
	code, body = e.do(t, "POST", "/plugins", `{"name":"api-test-custom","config":{"tags":["a","a","b"]}}`)
	if code != 201 || fmt.Sprint(body["config"]) != "map[header:X-Test tags:[a b] ttl:5]" {
		t.Fatalf("custom plugin create = %d %v", code, body)
	}
}
