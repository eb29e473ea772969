package declarative

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
)

// TestFormatVersions: Kong reads "1.1", "2.1" and "3.0"; in the older two,
// a route path with regex characters is a regex and becomes "~"+path
// (percent-encoded triplets decoded as Kong's migrate_path_280_300 does),
// and a plain path is normalized.
func TestFormatVersions(t *testing.T) {
	for _, v := range []string{"1.1", "2.1"} {
		t.Run(v, func(t *testing.T) {
			items := resolve(t, `
_format_version: "`+v+`"
services:
  - name: s
    host: s.internal
    routes:
      - name: nested
        paths: [/users/\d+, /plain, /a//b, "/x%2Ey", "/v(1|2)/%2E%7e%2f"]
routes:
  - name: top
    service: s
    paths: ["/v(1|2)/items$", "/%7Euser", "~/already"]
`, Current{}, 1)
			got := map[string]any{}
			for _, it := range items {
				if it.Type.Name == "routes" {
					got[it.Entity["name"].(string)] = it.Entity["paths"]
				}
			}
			want := map[string]any{
				"nested": []any{`~/users/\d+`, "/plain", "/a/b", "/x.y", `~/v(1|2)/\.~%2F`},
				"top":    []any{`~/v(1|2)/items$`, "/~user", "~/already"},
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("paths\n got %v\nwant %v", got, want)
			}
		})
	}
	// In 3.0 nothing is migrated.
	items := resolve(t, `{"_format_version":"3.0","routes":[{"name":"r","paths":["/users/\\d+"]}]}`, Current{}, 1)
	if p := items[0].Entity["paths"].([]any)[0]; p != `/users/\d+` {
		t.Errorf("3.0 path migrated to %v", p)
	}
	for _, bad := range []string{`"4.0"`, `"3"`, `3.0`, `null`} {
		doc, err := Parse([]byte(`{"_format_version":` + bad + `}`))
		if err == nil {
			_, err = Flatten(doc)
		}
		var de *Error
		if !errors.As(err, &de) || de.Fields["_format_version"] != "expected one of: 1.1, 2.1, 3.0" {
			t.Errorf("_format_version %s: %v", bad, err)
		}
	}
}

// kongExample has the shape of Kong's kong.yml template
// (kong/templates/kong_yml.lua: _comment on nested and top-level plugins,
// _transform, nested routes, plugins and credentials), with _ignore at
// the top level and on entities added.
const kongExample = `
_format_version: "3.0"
_transform: true
_comment: "orders API"
_ignore:
  - anything: [1, 2]
services:
- name: orders
  url: http://orders.internal
  tags: [team-a]
  _ignore: [{x: 1}]
  routes:
  - name: orders-route
    _comment: "nested route"
    paths: [/orders]
  plugins:
  - name: key-auth
- name: billing
  url: https://billing.internal
routes:
- name: billing-route
  service: orders
  hosts: ["billing.example"]
consumers:
- username: alice
  keyauth_credentials:
  - key: alice-key
    _comment: "a credential"
  plugins:
  - name: rate-limiting
    _comment: "alice's own limits"
    config: {policy: local, second: 5, hour: 10000}
plugins:
- name: rate-limiting
  consumer: alice
  service: billing
  _comment: "alice on billing"
  config: {hour: 2}
  tags: [limits]
`

// TestKongExampleFile: _comment and _ignore are accepted on entities
// (nested ones too) and _ignore at the top level, and never stored.
func TestKongExampleFile(t *testing.T) {
	items := resolve(t, kongExample, Current{}, 1)
	if len(items) != 9 {
		t.Fatalf("%d entities, want 9", len(items))
	}
	for _, it := range items {
		if _, ok := it.Entity["_comment"]; ok {
			t.Errorf("%s: _comment stored", it.Path)
		}
		if _, ok := it.Entity["_ignore"]; ok {
			t.Errorf("%s: _ignore stored", it.Path)
		}
	}
	// Kong's types: _comment a string, _ignore an array.
	for _, bad := range []string{
		`{"_format_version":"3.0","_ignore":"x"}`,
		`{"_format_version":"3.0","services":[{"host":"h","_comment":1}]}`,
		`{"_format_version":"3.0","services":[{"host":"h","_ignore":{}}]}`,
	} {
		doc, err := Parse([]byte(bad))
		if err == nil {
			var items []*Item
			if items, err = Flatten(doc); err == nil {
				err = Resolve(items, Current{}, 1)
			}
		}
		var de *Error
		if !errors.As(err, &de) {
			t.Errorf("%s accepted: %v", bad, err)
		}
	}
}

// TestKeyAuthWithoutKeyIsStable: a credential declared without a key keeps
// the stored one (and its id) when the same file is imported again.
func TestKeyAuthWithoutKeyIsStable(t *testing.T) {
	const file = `
_format_version: "3.0"
consumers:
  - username: u
    keyauth_credentials: [{}, {tags: [second]}]
`
	cur := stored(t, file)
	items := resolve(t, file, cur, 2)
	c, err := Plan(cur, items, 2)
	if err != nil {
		t.Fatal(err)
	}
	if ins, upd, del := c.Counts(); ins+upd+del != 0 {
		t.Fatalf("re-import changes: %v", summary(t, cur, c))
	}
	// Two credentials without keys get two keys.
	var keys []any
	for _, it := range items {
		if it.Type.Name == "keyauth_credentials" {
			keys = append(keys, it.Entity["key"])
		}
	}
	if len(keys) != 2 || keys[0] == keys[1] {
		t.Errorf("keys %v", keys)
	}
}

// TestExportAsKong: the export writes references as plain ids (Kong's
// db_export), leaves out the null fields whose default is null (as decK
// does; importing the file gives them null again), keeps a null that
// differs from the default, and imports again with zero changes.
func TestExportAsKong(t *testing.T) {
	cur := stored(t, base+`
upstreams:
  - name: up.internal
    targets: [{target: 10.0.0.1}]
plugins:
  - name: rate-limiting
    consumer: u
    service: t
    config: {second: 1}
routes:
  - name: top
    service: t
    paths: [/t]
    regex_priority: null
`)
	ents := map[string][]map[string]any{}
	for _, typ := range entity.Types {
		for _, e := range cur[typ.Name] {
			ents[typ.Name] = append(ents[typ.Name], e)
		}
	}
	y, err := Export(ents)
	if err != nil {
		t.Fatal(err)
	}
	text := string(y)
	for _, bad := range []string{"service:\n      id:", "id: null", "client_certificate:", "ca_certificates:", "tags: null", "route: null"} {
		if strings.Contains(text, bad) {
			t.Errorf("export has %q:\n%s", bad, text)
		}
	}
	for _, want := range []string{"_format_version: \"3.0\"\n", "_transform: false\n", "regex_priority: null\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("export lacks %q:\n%s", want, text)
		}
	}
	items := resolve(t, text, cur, 9)
	c, err := Plan(cur, items, 9)
	if err != nil {
		t.Fatal(err)
	}
	if ins, upd, del := c.Counts(); ins+upd+del != 0 {
		t.Fatalf("re-import of the export changes: %v", summary(t, cur, c))
	}
}
