package declarative

import (
	"errors"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
)

func TestFlattenAndResolve(t *testing.T) {
	doc, err := Parse([]byte(`
_format_version: "3.0"
services:
  - name: s
    host: s.internal
    routes:
      - name: r
        paths: [/]
        plugins: [{name: key-auth}]
certificates: []
consumers:
  - username: u
    keyauth_credentials: [{key: k}]
`))
	if err != nil {
		t.Fatal(err)
	}
	items, err := Flatten(doc)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, it := range items {
		types = append(types, it.Type.Name)
	}
	if got := strings.Join(types, ","); got != "services,routes,consumers,keyauth_credentials,plugins" {
		t.Fatalf("order = %s", got)
	}
	if err := Resolve(items, Current{}, 1); err != nil {
		t.Fatal(err)
	}
	svc, route, plugin := items[0], items[1], items[4]
	if route.Entity["service"].(map[string]any)["id"] != svc.ID || plugin.Entity["route"].(map[string]any)["id"] != route.ID {
		t.Errorf("references not resolved: %v %v", route.Entity["service"], plugin.Entity["route"])
	}
	// Same file, same ids.
	doc2, _ := Parse([]byte(`{"_format_version":"3.0","services":[{"name":"s","host":"s.internal"}]}`))
	items2, _ := Flatten(doc2)
	if err := Resolve(items2, Current{}, 1); err != nil || items2[0].ID != svc.ID {
		t.Errorf("ids are not deterministic: %s vs %s (%v)", items2[0].ID, svc.ID, err)
	}
	// A stored entity with the same name keeps its id.
	cur := Current{"services": {"11111111-2222-4333-8444-555555555555": {"id": "11111111-2222-4333-8444-555555555555", "name": "s", "created_at": int64(1), "updated_at": int64(1)}}}
	items3, _ := Flatten(doc2)
	if err := Resolve(items3, cur, 1); err != nil || items3[0].ID != "11111111-2222-4333-8444-555555555555" {
		t.Errorf("stored id not reused: %s (%v)", items3[0].ID, err)
	}
}

func TestInvalid(t *testing.T) {
	for name, body := range map[string]string{
		"version":  `{"_format_version":"4.0"}`,
		"unknown":  `{"_format_version":"3.0","widgets":[]}`,
		"not list": `{"_format_version":"3.0","services":{}}`,
		"utf8":     "{\"_format_version\":\"3.0\xff\"}",
	} {
		t.Run(name, func(t *testing.T) {
			doc, err := Parse([]byte(body))
			if err == nil {
				_, err = Flatten(doc)
			}
			var de *Error
			if !errors.As(err, &de) || !strings.HasPrefix(de.Error(), "declarative config is invalid") {
				t.Fatalf("err = %v", err)
			}
		})
	}
	doc, _ := Parse([]byte(`{"_format_version":"3.0","routes":[{"paths":["/"],"service":"missing"}]}`))
	items, _ := Flatten(doc)
	var de *Error
	if err := Resolve(items, Current{}, 1); !errors.As(err, &de) || de.Fields["routes[0]"] == nil {
		t.Fatalf("dangling reference: %v", err)
	}
}

func TestExportRoundTrip(t *testing.T) {
	e, errs := entity.Normalize(entity.Service, map[string]any{"host": "h", "name": "s"}, nil, map[string]any{"id": "11111111-2222-4333-8444-555555555555", "created_at": int64(1795636458), "updated_at": int64(1795636458)})
	if errs != nil {
		t.Fatal(errs)
	}
	y, err := Export(map[string][]map[string]any{"services": {e}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(y), "e+09") {
		t.Errorf("timestamps exported as floats:\n%s", y)
	}
	doc, err := Parse(y)
	if err != nil {
		t.Fatal(err)
	}
	items, err := Flatten(doc)
	if err != nil || len(items) != 1 {
		t.Fatalf("flatten export: %v", err)
	}
	if err := Resolve(items, Current{"services": {e["id"].(string): e}}, 5); err != nil {
		t.Fatal(err)
	}
	if items[0].ID != e["id"] || items[0].Entity["created_at"] != int64(1795636458) {
		t.Errorf("round trip = %v", items[0].Entity)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"_format_version":"3.0","services":[{"name":"a","host":"h","routes":[{"paths":["/"]}]}]}`))
	f.Add([]byte("_format_version: '3.0'\nconsumers:\n  - username: u\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := Parse(b)
		if err != nil {
			return
		}
		items, err := Flatten(doc)
		if err != nil {
			return
		}
		_ = Resolve(items, Current{}, 1)
	})
}

// TestResolveEntityIsNormalized: the entity Resolve gives is the one
// Normalize gives for the item's input, id and timestamps kept.
func TestResolveEntityIsNormalized(t *testing.T) {
	for name, file := range map[string]string{
		"new":            `{"_format_version":"3.0","services":[{"name":"s","host":"s.internal","routes":[{"name":"r","paths":["/"]}]}]}`,
		"timestamps":     `{"_format_version":"3.0","services":[{"name":"s","host":"s.internal","created_at":5,"updated_at":6}]}`,
		"id in the file": `{"_format_version":"3.0","services":[{"id":"11111111-2222-4333-8444-555555555555","name":"s","host":"s.internal"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			items := resolve(t, file, Current{"services": {"11111111-2222-4333-8444-555555555555": {"id": "11111111-2222-4333-8444-555555555555", "name": "s", "created_at": int64(2), "updated_at": int64(3)}}}, 7)
			for _, it := range items {
				in := map[string]any{}
				for k, v := range it.In {
					if k != "id" && k != "created_at" && k != "updated_at" {
						in[k] = v
					}
				}
				keep := map[string]any{"id": it.ID, "created_at": it.Entity["created_at"], "updated_at": it.Entity["updated_at"]}
				want, errs := entity.Normalize(it.Type, in, nil, keep)
				if errs != nil {
					t.Fatal(errs)
				}
				if got, exp := jsonString(it.Entity), jsonString(want); got != exp {
					t.Errorf("%s:\n got %s\nwant %s", it.Path, got, exp)
				}
				if it.Entity["id"] != it.ID {
					t.Errorf("%s: id %v, want %s", it.Path, it.Entity["id"], it.ID)
				}
			}
		})
	}
}
