package declarative

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
)

// flatten parses and flattens a configuration.
func flatten(t *testing.T, cfg string) []*Item {
	t.Helper()
	doc, err := Parse([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	items, err := Flatten(doc)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// resolve parses, flattens and resolves a configuration against cur.
func resolve(t *testing.T, cfg string, cur Current, now int64) []*Item {
	t.Helper()
	items := flatten(t, cfg)
	if err := Resolve(items, cur, now); err != nil {
		t.Fatal(err)
	}
	return items
}

// stored is the configuration cfg as stored (imported at time 1).
func stored(t *testing.T, cfg string) Current {
	t.Helper()
	cur := Current{}
	for _, it := range resolve(t, cfg, Current{}, 1) {
		if cur[it.Type.Name] == nil {
			cur[it.Type.Name] = map[string]map[string]any{}
		}
		cur[it.Type.Name][it.ID] = it.Entity
	}
	return cur
}

// label names an entity in the summaries: its type and endpoint key (or
// plugin name, or target).
func label(t *entity.Type, e map[string]any) string {
	for _, f := range []string{"name", "username", "target"} {
		if s, ok := e[f].(string); ok {
			return t.Name + " " + s
		}
	}
	return t.Name + " ?"
}

// summary lists the changes in order: "insert T key", "update T key:
// changed fields", "delete T key".
func summary(t *testing.T, cur Current, c Changes) []string {
	t.Helper()
	var out []string
	for _, u := range c.Upserts {
		for _, e := range u.Update {
			id, _ := entity.ID(e)
			old := cur[u.Type.Name][id]
			var changed []string
			for k, v := range e {
				a, _ := json.Marshal(v)
				b, _ := json.Marshal(old[k])
				if string(a) != string(b) {
					changed = append(changed, k)
				}
			}
			sort.Strings(changed)
			out = append(out, "update "+label(u.Type, e)+": "+strings.Join(changed, ","))
		}
		if len(u.Bodies) != len(u.Insert) {
			t.Errorf("%s: %d bodies for %d inserts", u.Type.Name, len(u.Bodies), len(u.Insert))
		}
		for i, e := range u.Insert {
			if b, _ := entity.Canonical(e); string(b) != string(u.Bodies[i]) {
				t.Errorf("%s: body %d is not the entity's canonical JSON", u.Type.Name, i)
			}
			out = append(out, "insert "+label(u.Type, e))
		}
	}
	for _, d := range c.Deletes {
		for _, id := range d.IDs {
			out = append(out, "delete "+label(d.Type, cur[d.Type.Name][id]))
		}
	}
	return out
}

const base = `
_format_version: "3.0"
services:
  - name: s
    host: s.internal
    routes:
      - name: r
        paths: [/r]
        plugins: [{name: key-auth}]
  - name: t
    host: t.internal
consumers:
  - username: u
    keyauth_credentials: [{key: k}]
`

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cur       string // stored configuration ("": none)
		desired   string
		want      []string
		unchanged int
	}{
		{"empty store: creates, parents first", "", base, []string{
			"insert services s", "insert services t", "insert routes r", "insert consumers u",
			"insert keyauth_credentials ?", "insert plugins key-auth"}, 0},
		{"same configuration: no change", base, base, nil, 6},
		{"changed field: an update of that field and updated_at", base,
			strings.Replace(base, "host: t.internal", "host: t2.internal", 1),
			[]string{"update services t: host,updated_at"}, 5},
		{"changed child: only the child", base,
			strings.Replace(base, "paths: [/r]", "paths: [/r, /q]", 1),
			[]string{"update routes r: paths,updated_at"}, 5},
		{"undeclared entity: deleted", base,
			strings.Replace(base, "  - name: t\n    host: t.internal\n", "", 1),
			[]string{"delete services t"}, 5},
		{"undeclared parent: its children deleted first", base, `
_format_version: "3.0"
services:
  - name: t
    host: t.internal
consumers:
  - username: u
    keyauth_credentials: [{key: k}]
`, []string{"delete plugins key-auth", "delete routes r", "delete services s"}, 3},
		{"renamed parent: a new entity, the old one deleted, the child (same key) moved", base,
			strings.Replace(base, "username: u", "username: v", 1),
			[]string{"insert consumers v", "update keyauth_credentials ?: consumer,updated_at", "delete consumers u"}, 4},
		{"everything removed: all deleted, children first", base, `_format_version: "3.0"`, []string{
			"delete plugins key-auth", "delete keyauth_credentials ?", "delete consumers u", "delete routes r",
			"delete services s", "delete services t"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := Current{}
			if tc.cur != "" {
				cur = stored(t, tc.cur)
			}
			items := resolve(t, tc.desired, cur, 2)
			before := make([]string, len(items))
			for i, it := range items {
				b, _ := entity.Canonical(it.Entity)
				before[i] = string(b)
			}
			c, err := Plan(cur, items, 2)
			if err != nil {
				t.Fatal(err)
			}
			if got := summary(t, cur, c); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("changes:\n got %q\nwant %q", got, tc.want)
			}
			if c.Unchanged != tc.unchanged {
				t.Errorf("unchanged = %d, want %d", c.Unchanged, tc.unchanged)
			}
			ins, upd, del := c.Counts()
			if ins+upd+del != len(tc.want) {
				t.Errorf("counts %d+%d+%d, want %d changes", ins, upd, del, len(tc.want))
			}
			for i, it := range items {
				if b, _ := entity.Canonical(it.Entity); string(b) != before[i] {
					t.Errorf("Plan changed item %s", it.Path)
				}
			}
		})
	}
}

func TestPlanRefusesUnresolvedItems(t *testing.T) {
	items := flatten(t, base)
	if _, err := Plan(Current{}, items, 1); err == nil {
		t.Fatal("Plan of unresolved items succeeded")
	}
}
