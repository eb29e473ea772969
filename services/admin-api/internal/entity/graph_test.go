package entity

import (
	"testing"

	"github.com/deltaplane/deltaplane/shared/schema"
)

// TestReferenceFieldsFromGraph: each descriptor, in the graph's order, has
// exactly the graph's references as fields: a Foreign field ({"id": ...}),
// required as the graph says, or an array of UUIDs for a list.
func TestReferenceFieldsFromGraph(t *testing.T) {
	st := schema.Types()
	if len(Types) != len(st) {
		t.Fatalf("%d descriptors, %d types in the graph", len(Types), len(st))
	}
	for i, d := range Types {
		if d.Name != st[i].Name {
			t.Fatalf("Types[%d] = %s, the graph has %s", i, d.Name, st[i].Name)
		}
		n := 0
		for _, f := range d.Fields {
			if f.Ref == nil {
				if f.Kind == Foreign {
					t.Errorf("%s.%s: a foreign field outside the graph", d.Name, f.Name)
				}
				continue
			}
			n++
			r, ok := st[i].Ref(f.Name)
			if !ok || *f.Ref != r {
				t.Errorf("%s.%s: ref %+v, the graph has %+v", d.Name, f.Name, *f.Ref, r)
			}
			switch {
			case r.List && (f.Kind != Array || f.Elem == nil || f.Elem.Check == nil):
				t.Errorf("%s.%s: a list of ids is an Array of checked strings", d.Name, f.Name)
			case !r.List && f.Kind != Foreign:
				t.Errorf("%s.%s: kind %v, want Foreign", d.Name, f.Name, f.Kind)
			}
			if f.Required != r.Required {
				t.Errorf("%s.%s: required %v, the graph says %v", d.Name, f.Name, f.Required, r.Required)
			}
		}
		if n != len(st[i].Refs) {
			t.Errorf("%s: %d reference fields, the graph has %d", d.Name, n, len(st[i].Refs))
		}
	}
	if fs := Service.RefLists(); len(fs) != 1 || JoinTable(Service, fs[0]) != "services_ca_certificates" {
		t.Errorf("services' reference lists: %v", fs)
	}
	if _, msg := checkValue(mustField(t, Target, "upstream"), nil); msg != "required field missing" {
		t.Errorf("targets.upstream null: %v", msg)
	}
}

func mustField(t *testing.T, d *Type, name string) Field {
	t.Helper()
	f, ok := d.Field(name)
	if !ok {
		t.Fatalf("%s has no field %s", d.Name, name)
	}
	return f
}
