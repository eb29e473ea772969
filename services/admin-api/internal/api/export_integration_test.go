//go:build integration

package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/declarative"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
)

// TestExportStreamed: GET /config, which streams the export as it reads
// the entities, answers exactly what c.JSON answered when the export was
// built in memory first ({"config": declarative.Export(every stored
// entity)}, compact and with ?pretty), on a configuration with every kind
// of entity and values JSON escapes (HTML characters, quotes, newlines,
// non-ASCII), spanning several 64 KiB chunks.
func TestExportStreamed(t *testing.T) {
	e := setup(t, false)
	var services, consumers, upstreams []any
	for i := range 300 {
		services = append(services, map[string]any{
			"name": fmt.Sprintf("svc-%03d", i), "url": fmt.Sprintf("http://up-%03d.internal:8080/a/<b>&c", i),
			"tags": []string{"team-é", `q"uote`, "x\u2028y"},
			"routes": []any{map[string]any{
				"name": fmt.Sprintf("svc-%03d-r", i), "paths": []string{fmt.Sprintf("~/svc-%03d/items/\\d+$", i)}, "hosts": []string{"api.example.com"},
				"plugins": []any{map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 100 + i, "policy": "local"}}},
			}},
			"plugins": []any{map[string]any{"name": "key-auth", "config": map[string]any{"key_names": []string{"apikey"}}}},
		})
		consumers = append(consumers, map[string]any{"username": fmt.Sprintf("user-%03d", i), "custom_id": "日本-" + fmt.Sprint(i),
			"keyauth_credentials": []any{map[string]any{"key": fmt.Sprintf("key-%03d", i)}}})
		upstreams = append(upstreams, map[string]any{"name": fmt.Sprintf("up-%03d.internal", i),
			"targets": []any{map[string]any{"target": fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250+1), "weight": 50}}})
	}
	body, _ := json.Marshal(map[string]any{"_format_version": "3.0", "services": services, "consumers": consumers, "upstreams": upstreams})
	if code, b := e.raw(t, "POST", "/config", string(body), "application/json"); code != 201 {
		t.Fatalf("POST /config = %d %s", code, b)
	}

	ents := map[string][]map[string]any{}
	for _, typ := range entity.Types {
		var bodies []string
		if err := e.db.Raw(`SELECT body::text FROM ` + typ.Name + ` ORDER BY id`).Scan(&bodies).Error; err != nil {
			t.Fatal(err)
		}
		for _, b := range bodies {
			m, err := entity.Decode([]byte(b))
			if err != nil {
				t.Fatal(err)
			}
			ents[typ.Name] = append(ents[typ.Name], m)
		}
	}
	y, err := declarative.Export(ents)
	if err != nil {
		t.Fatal(err)
	}
	for _, pretty := range []bool{false, true} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		path := "/config"
		if pretty {
			enc.SetIndent("", "  ")
			path += "?pretty"
		}
		if err := enc.Encode(map[string]any{"config": string(y)}); err != nil {
			t.Fatal(err)
		}
		code, got := e.raw(t, "GET", path, "", "")
		if code != 200 {
			t.Fatalf("GET %s = %d %.300s", path, code, got)
		}
		if !bytes.Equal(got, want.Bytes()) {
			g, w := string(got), want.String()
			i := 0
			for i < len(g) && i < len(w) && g[i] == w[i] {
				i++
			}
			t.Fatalf("GET %s differs at byte %d (%d bytes, want %d):\ngot  %q\nwant %q", path, i, len(g), len(w), g[max(0, i-60):min(len(g), i+60)], w[max(0, i-60):min(len(w), i+60)])
		}
		if !pretty && (want.Len() < 3*64<<10 || !strings.Contains(want.String(), `\u0026`) || !strings.Contains(want.String(), `\u2028`)) {
			t.Errorf("the configuration does not exercise chunks and escapes (%d bytes)", want.Len())
		}
	}
}
