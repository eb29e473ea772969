package api

import (
	"encoding/json"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
)

func TestParseForm(t *testing.T) {
	m, err := parseForm([]byte("name=s&url=http://a.b&retries=3&enabled=false&tags=x&tags=y"), entity.Service)
	if err != nil {
		t.Fatal(err)
	}
	if m["retries"] != json.Number("3") || m["enabled"] != false || len(m["tags"].([]any)) != 2 || m["url"] != "http://a.b" {
		t.Errorf("service form = %v", m)
	}
	m, _ = parseForm([]byte("paths[]=/a&service.id=8c8a7b0e-0c1f-4b5e-9d43-0b6a3c6f0e11&hosts=h.example&strip_path=false"), entity.Route)
	if p := m["paths"].([]any); len(p) != 1 || p[0] != "/a" {
		t.Errorf("paths = %v", m["paths"])
	}
	if h := m["hosts"].([]any); len(h) != 1 {
		t.Errorf("a single value of an array field is an array: %v", m["hosts"])
	}
	if m["service"].(map[string]any)["id"] != "8c8a7b0e-0c1f-4b5e-9d43-0b6a3c6f0e11" || m["strip_path"] != false {
		t.Errorf("route form = %v", m)
	}
	m, _ = parseForm([]byte("name=rate-limiting&config.minute=5&config.policy=local"), entity.Plugin)
	if cfg := m["config"].(map[string]any); cfg["minute"] != json.Number("5") || cfg["policy"] != "local" {
		t.Errorf("plugin form = %v", m)
	}
	if _, errs := entity.Normalize(entity.Plugin, m, nil, map[string]any{"id": "8c8a7b0e-0c1f-4b5e-9d43-0b6a3c6f0e11", "created_at": int64(1), "updated_at": int64(1)}); errs != nil {
		t.Errorf("form plugin rejected: %v", errs)
	}
}
