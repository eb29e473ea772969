package declarative

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/shared/schema"
)

// flattenTree is Flatten as it was before Read: over the decoded
// document, every item holding its map from the start. The reference
// that Read must agree with.
func flattenTree(doc map[string]any) ([]*Item, error) {
	errs := &Error{Fields: map[string]any{}}
	if fv, _ := doc["_format_version"].(string); !slices.Contains(FormatVersions, fv) {
		errs.Fields["_format_version"] = "expected one of: " + strings.Join(FormatVersions, ", ")
	} else {
		migrateTree(doc)
	}
	byType := map[string][]*Item{}
	var walk func(t *entity.Type, list any, path string, parent *Item, field string)
	walk = func(t *entity.Type, list any, path string, parent *Item, field string) {
		arr, ok := list.([]any)
		if !ok {
			if list != nil {
				errs.Fields[path] = "expected an array"
			}
			return
		}
		for i, el := range arr {
			p := fmt.Sprintf("%s[%d]", path, i)
			if s, ok := el.(string); ok && t == entity.SNI {
				el = map[string]any{"name": s}
			}
			m, ok := el.(map[string]any)
			if !ok {
				errs.Fields[p] = "expected a record"
				continue
			}
			if msg := extraAttributes(m); msg != nil {
				errs.Fields[p] = msg
				continue
			}
			it := &Item{Type: t, In: m, Path: p, parent: parent, field: field}
			byType[t.Name] = append(byType[t.Name], it)
			for _, r := range schema.Children(t.Name) {
				if sub, ok := m[r.Child]; ok {
					delete(m, r.Child)
					ct, _ := entity.Lookup(r.From)
					walk(ct, sub, p+"."+r.Child, it, r.Field)
				}
			}
		}
	}
	for k, v := range doc {
		switch k {
		case "_format_version", "_transform", "_workspace", "_info":
			continue
		case "_comment", "_ignore":
			if msg := extraAttributes(map[string]any{k: v}); msg != nil {
				errs.Fields[k] = msg[k]
			}
			continue
		}
		t, ok := entity.Lookup(k)
		if !ok {
			errs.Fields[k] = "unknown field"
			continue
		}
		walk(t, v, k, nil, "")
	}
	if len(errs.Fields) > 0 {
		return nil, errs
	}
	var out []*Item
	for _, t := range entity.Types {
		list := byType[t.Name]
		sort.SliceStable(list, func(i, j int) bool { return list[i].Path < list[j].Path })
		out = append(out, list...)
	}
	return out, nil
}

// migrateTree rewrites a "1.1" or "2.1" document to "3.0" as Kong does
// (kong/db/declarative/migrations/route_path.lua): the paths of routes,
// top-level and nested in top-level services, pass through migratePath.
// Nothing else differs between the formats.
func migrateTree(doc map[string]any) {
	v := doc["_format_version"]
	if v != "1.1" && v != "2.1" {
		return
	}
	routes := func(list any) {
		arr, _ := list.([]any)
		for _, r := range arr {
			m, _ := r.(map[string]any)
			paths, _ := m["paths"].([]any)
			for i, p := range paths {
				if s, ok := p.(string); ok {
					paths[i] = migratePath(s)
				}
			}
		}
	}
	routes(doc["routes"])
	services, _ := doc["services"].([]any)
	for _, s := range services {
		m, _ := s.(map[string]any)
		routes(m["routes"])
	}
	doc["_format_version"] = FormatVersion
}

// resolvedView is what a test compares of resolved items: per item its
// type, path, id and normalized entity (canonical JSON; a credential's
// key aside: one declared without a key gets a random one).
func resolvedView(t *testing.T, items []*Item) []string {
	t.Helper()
	var out []string
	for _, it := range items {
		e := it.Entity
		if it.Type == entity.KeyAuth {
			e = maps.Clone(e)
			delete(e, "key")
		}
		b, err := entity.Canonical(e)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, it.Type.Name+" "+it.Path+" "+it.ID+" "+string(b))
	}
	return out
}

// unitsJSON is a configuration of n units (a service with two routes and
// a plugin on one, a consumer with a credential, an upstream with a
// target: 8 entities), children nested in their parents.
func unitsJSON(n int) []byte {
	var services, consumers, upstreams []any
	for i := range n {
		services = append(services, map[string]any{"name": fmt.Sprintf("svc-%d", i), "url": fmt.Sprintf("http://u-%d.internal/api", i),
			"routes": []any{
				map[string]any{"name": fmt.Sprintf("svc-%d-a", i), "paths": []string{fmt.Sprintf("/a/%d", i)}, "plugins": []any{map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 10 + i}}}},
				map[string]any{"name": fmt.Sprintf("svc-%d-b", i), "paths": []string{fmt.Sprintf("~/b/%d/\\d+$", i)}},
			}})
		consumers = append(consumers, map[string]any{"username": fmt.Sprintf("user-%d", i), "keyauth_credentials": []any{map[string]any{"key": fmt.Sprintf("k-%d", i)}}})
		upstreams = append(upstreams, map[string]any{"name": fmt.Sprintf("u-%d.internal", i), "targets": []any{map[string]any{"target": fmt.Sprintf("10.0.%d.%d:80", i/250, i%250)}}})
	}
	b, _ := json.Marshal(map[string]any{"_format_version": "3.0", "services": services, "consumers": consumers, "upstreams": upstreams})
	return b
}

// TestReadAgreesWithTheDecodedTree: Read (entities kept as their JSON
// until resolved) gives the items, ids and entities, or the errors, that
// flattening the decoded document gave, on every form the package reads:
// JSON and YAML, nested and top-level entities, references by name,
// formats 1.1 and 2.1 (paths migrated), _comment and _ignore, the
// {"config": ...} wrapper, repeated keys, and invalid documents.
func TestReadAgreesWithTheDecodedTree(t *testing.T) {
	cases := map[string]string{
		"kong example": kongExample,
		"units":        string(unitsJSON(40)),
		"wrapped":      `{"config": "_format_version: '3.0'\nservices:\n  - name: s\n    host: h\n"}`,
		"yaml":         "_format_version: \"3.0\"\nservices:\n  - name: s\n    host: h\n    routes:\n      - paths: [/x]\nroutes:\n  - name: top\n    service: s\n    paths: [\"/y\"]\n",
		"format 1.1":   `{"_format_version":"1.1","services":[{"name":"s","host":"h","routes":[{"paths":["/a%2Fb","/c.d","/e(f)"]}]}],"routes":[{"service":"s","paths":["/users/\\d+"]}]}`,
		"format 2.1":   `{"_format_version":"2.1","routes":[{"paths":["/%7Bx%7D"],"service":{"name":"s"}}],"services":[{"name":"s","host":"h"}]}`,
		"repeated key": `{"_format_version":"3.0","services":[{"name":"a","host":"h"}],"services":[{"name":"b","host":"h","host":"h2"}]}`,
		"escapes":      "{ \"_format_version\" : \"3.0\" ,\n \"serv\\u0069ces\" : [ { \"name\" : \"s\\\"]}{,:\" , \"host\":\"h\", \"tags\" : [ \"a\\\\\", \"b]\" , \"}\" ] , \"retries\" : 3 , \"enabled\":true,\"path\":null } ] , \"routes\" : [ ] }",
		"trailing":     `{"_format_version":"3.0","services":[{"name":"s","host":"h"}]} {"more":1}`,
		"null list":    `{"_format_version":"3.0","services":null,"consumers":[{"username":"u","keyauth_credentials":null}]}`,
		"snis":         `{"_format_version":"3.0","certificates":[{"cert":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----","key":"k","snis":["a.example",{"name":"b.example"}]}]}`,
		"no key":       `{"_format_version":"3.0","consumers":[{"username":"u","keyauth_credentials":[{},{"tags":["t"]}]}]}`,
		"bad version":  `{"_format_version":"9.9","services":[{"name":"s","host":"h"}]}`,
		"not array":    `{"_format_version":"3.0","services":{"name":"s"}}`,
		"not record":   `{"_format_version":"3.0","services":[1,"x",[2]]}`,
		"bad extras":   `{"_format_version":"3.0","_ignore":"x","_comment":2,"services":[{"host":"h","_comment":1},{"host":"h","_ignore":{},"routes":[{"paths":["/"]}]}]}`,
		"unknown":      `{"_format_version":"3.0","widgets":[]}`,
		"bad ref":      `{"_format_version":"3.0","routes":[{"paths":["/"],"service":"nope"}]}`,
		"duplicate":    `{"_format_version":"3.0","services":[{"name":"a","host":"h"},{"name":"a","host":"h"}]}`,
		"bad entity":   `{"_format_version":"3.0","services":[{"name":"x"}]}`,
		"not object":   `[1]`,
		"bad json":     `{"_format_version":"3.0",`,
		"bad yaml":     "_format_version: [",
	}
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			var want []string
			var wantErr error
			tree, err := Parse([]byte(doc))
			var items []*Item
			if err == nil {
				items, err = flattenTree(tree)
			}
			if err == nil {
				err = Resolve(items, Current{}, 1)
			}
			if err == nil {
				want = resolvedView(t, items)
			}
			wantErr = err

			got, err := Read([]byte(doc))
			if err == nil {
				for _, it := range got {
					if it.In != nil && it.Type != entity.SNI {
						t.Fatalf("%s decoded by Read", it.Path)
					}
				}
				err = Resolve(got, Current{}, 1)
			}
			if fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Fatalf("error = %v\nwant    %v", err, wantErr)
			}
			if err == nil && !reflect.DeepEqual(resolvedView(t, got), want) {
				t.Errorf("items = %s\nwant    %s", strings.Join(resolvedView(t, got), "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestImportHoldsOneEntityAtATime: an import (Read, then Resolver.Each)
// of N entities never holds more than one item's decoded maps: Read
// decodes none, Each decodes each item when it resolves it and releases
// it once planned, whatever N.
func TestImportHoldsOneEntityAtATime(t *testing.T) {
	const units = 300
	items, err := Read(unitsJSON(units))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 8*units {
		t.Fatalf("%d items, want %d", len(items), 8*units)
	}
	holding := func() int {
		n := 0
		for _, it := range items {
			if it.In != nil || it.Entity != nil {
				n++
			}
		}
		return n
	}
	if n := holding(); n != 0 {
		t.Fatalf("Read left %d items decoded", n)
	}
	most, calls := 0, 0
	r := NewResolver(NewIndex(), 1)
	err = r.Each(items, func(it *Item, out Outcome, e map[string]any, body []byte) error {
		calls++
		most = max(most, holding())
		if out != Insert || e == nil || len(body) == 0 {
			t.Errorf("%s: %v", it.Path, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if most != 1 || calls != len(items) || r.Decoded() != len(items) {
		t.Errorf("held at most %d items' maps (want 1), %d changes, %d decoded (want %d)", most, calls, r.Decoded(), len(items))
	}
	if n := holding(); n != 0 {
		t.Errorf("%d items still hold maps after Each", n)
	}
}

// FuzzReadAgreesWithTheDecodedTree: on any input, Read resolves to what
// the decoded document's flattening resolves to, or fails with the same
// error.
func FuzzReadAgreesWithTheDecodedTree(f *testing.F) {
	f.Add([]byte(`{"_format_version":"3.0","services":[{"name":"a","host":"h","routes":[{"paths":["/"]}]}]}`))
	f.Add([]byte(`{"_format_version":"1.1","routes":[{"paths":["/a%2F"],"service":"s"}],"services":[{"name":"s","host":"h"}]}`))
	f.Add([]byte("_format_version: '3.0'\nconsumers:\n  - username: u\n    keyauth_credentials: [{key: k}]\n"))
	f.Add([]byte(`{"config":"{\"_format_version\":\"3.0\"}"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var want []string
		tree, err := Parse(b)
		var items []*Item
		if err == nil {
			items, err = flattenTree(tree)
		}
		if err == nil {
			err = Resolve(items, Current{}, 1)
		}
		if err == nil {
			want = resolvedView(t, items)
		}
		wantErr := err
		got, err := Read(b)
		if err == nil {
			err = Resolve(got, Current{}, 1)
		}
		if fmt.Sprint(err) != fmt.Sprint(wantErr) {
			t.Fatalf("error = %v, want %v", err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(resolvedView(t, got), want) {
			t.Fatalf("items = %v, want %v", resolvedView(t, got), want)
		}
	})
}
