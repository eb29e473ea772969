package dataplane

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/deltaplane/deltaplane/services/dataplane/sdk"
	"github.com/deltaplane/deltaplane/shared/pluginschema"
)

type customConfig struct {
	Header string `json:"header"`
}

// TestSchemasCommand: "schemas -out DIR" writes one file per plugin that
// admin-api's loader reads back as the same schema.
func TestSchemasCommand(t *testing.T) {
	custom := sdk.Define(sdk.Definition[customConfig]{
		Schema: &sdk.Schema{Name: "custom", Fields: []sdk.Field{{Name: "header", Type: sdk.String, Default: "X-Custom"}}},
		New:    func(sdk.Instance, customConfig) (sdk.Handler, error) { return nil, nil },
	})
	dir := t.TempDir()
	if err := command([]string{"schemas", "-out", dir}, io.Discard, []sdk.Plugin{custom}); err != nil {
		t.Fatal(err)
	}
	want := map[string]*pluginschema.Schema{"key-auth": pluginschema.KeyAuth, "rate-limiting": pluginschema.RateLimiting, "custom": custom.Schema()}
	for name, s := range want {
		b, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := pluginschema.Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		a, _ := got.Validate(map[string]any{})
		w, _ := s.Validate(map[string]any{})
		if got.Name != name || !reflect.DeepEqual(a, w) {
			t.Fatalf("%s read back as %+v", name, got)
		}
	}
	if err := command([]string{"nope"}, io.Discard, nil); err == nil {
		t.Fatal("unknown command accepted")
	}
}
