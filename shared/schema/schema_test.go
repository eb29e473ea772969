package schema

import (
	"fmt"
	"slices"
	"testing"

	"github.com/deltaplane/deltaplane/shared/wire"
)

// TestGraph states the references of Kong's entities (KONG_API.md,
// "Entities and relations") one by one.
func TestGraph(t *testing.T) {
	want := []string{
		"services.client_certificate -> certificates restrict",
		"services.ca_certificates -> ca_certificates restrict list",
		"routes.service -> services restrict nested routes child routes",
		"upstreams.client_certificate -> certificates restrict",
		"targets.upstream -> upstreams cascade required nested targets child targets",
		"snis.certificate -> certificates restrict required nested snis child snis",
		"keyauth_credentials.consumer -> consumers cascade required nested key-auth child keyauth_credentials",
		"plugins.route -> routes cascade nested plugins child plugins",
		"plugins.service -> services cascade nested plugins child plugins",
		"plugins.consumer -> consumers cascade nested plugins child plugins",
	}
	var got []string
	for _, typ := range Types() {
		for _, r := range typ.Refs {
			got = append(got, describe(r))
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("references:\n got %q\nwant %q", got, want)
	}
}

func describe(r Ref) string {
	s := fmt.Sprintf("%s.%s -> %s %s", r.From, r.Field, r.To, r.OnDelete)
	if r.Required {
		s += " required"
	}
	if r.List {
		s += " list"
	}
	if r.Endpoint != "" {
		s += " nested " + r.Endpoint
	}
	if r.Child != "" {
		s += " child " + r.Child
	}
	return s
}

// TestTypesAreWires: the types are wire's, each once, each after the types
// it references; names, paths, fields, nested endpoints and child keys do
// not collide.
func TestTypesAreWires(t *testing.T) {
	var names []string
	paths := map[string]bool{}
	seen := map[string]bool{}
	for _, typ := range Types() {
		names = append(names, typ.Name)
		if paths[typ.Path] || typ.Path == "" {
			t.Errorf("%s: path %q empty or taken", typ.Name, typ.Path)
		}
		paths[typ.Path] = true
		fields := map[string]bool{}
		for _, r := range typ.Refs {
			if r.From != typ.Name {
				t.Errorf("%s.%s: From %q", typ.Name, r.Field, r.From)
			}
			if fields[r.Field] {
				t.Errorf("%s.%s declared twice", typ.Name, r.Field)
			}
			fields[r.Field] = true
			if !seen[r.To] {
				t.Errorf("%s.%s references %s, which is not listed before it", typ.Name, r.Field, r.To)
			}
			if r.List && (r.OnDelete != Restrict || r.Endpoint != "" || r.Child != "") {
				t.Errorf("%s.%s: a list is restrict and not nested", typ.Name, r.Field)
			}
		}
		seen[typ.Name] = true
	}
	if !slices.Equal(slices.Sorted(slices.Values(names)), slices.Sorted(slices.Values(wire.EntityTypes))) {
		t.Fatalf("types %v, wire has %v", names, wire.EntityTypes)
	}
	for _, parent := range names {
		endpoints, children := map[string]string{}, map[string]string{}
		for _, r := range RefsTo(parent) {
			if r.Endpoint != "" {
				if from, ok := endpoints[r.Endpoint]; ok && from != r.From {
					t.Errorf("/%s/{id}/%s names both %s and %s", parent, r.Endpoint, from, r.From)
				}
				endpoints[r.Endpoint] = r.From
			}
			if r.Child != "" {
				if from, ok := children[r.Child]; ok && from != r.From {
					t.Errorf("%s[].%s names both %s and %s", parent, r.Child, from, r.From)
				}
				children[r.Child] = r.From
			}
		}
	}
}

func TestRefsToAndChildren(t *testing.T) {
	refs := func(rs []Ref) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.From+"."+r.Field)
		}
		return out
	}
	for _, tc := range []struct {
		typ            string
		refsTo, childs []string
	}{
		{wire.TypeCertificate, []string{"services.client_certificate", "upstreams.client_certificate", "snis.certificate"}, []string{"snis.certificate"}},
		{wire.TypeCACertificate, []string{"services.ca_certificates"}, nil},
		{wire.TypeService, []string{"routes.service", "plugins.service"}, []string{"routes.service", "plugins.service"}},
		{wire.TypeConsumer, []string{"keyauth_credentials.consumer", "plugins.consumer"}, []string{"keyauth_credentials.consumer", "plugins.consumer"}},
		{wire.TypePlugin, nil, nil},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			if got := refs(RefsTo(tc.typ)); !slices.Equal(got, tc.refsTo) {
				t.Errorf("RefsTo = %v, want %v", got, tc.refsTo)
			}
			if got := refs(Children(tc.typ)); !slices.Equal(got, tc.childs) {
				t.Errorf("Children = %v, want %v", got, tc.childs)
			}
		})
	}
}

func TestCollection(t *testing.T) {
	for _, tc := range []struct {
		segment, typ string
		ok           bool
	}{
		{"services", wire.TypeService, true},
		{"ca_certificates", wire.TypeCACertificate, true},
		{"key-auths", wire.TypeKeyAuth, true},
		{"key-auth", wire.TypeKeyAuth, true},
		{"plugins", wire.TypePlugin, true},
		{"keyauth_credentials", "", false},
		{"config", "", false},
	} {
		got, ok := Collection(tc.segment)
		if got != tc.typ || ok != tc.ok {
			t.Errorf("Collection(%q) = %q, %v; want %q, %v", tc.segment, got, ok, tc.typ, tc.ok)
		}
	}
}

func TestLookupAndCascades(t *testing.T) {
	p, ok := Lookup(wire.TypePlugin)
	if !ok || len(p.Cascades()) != 3 {
		t.Fatalf("plugins: %v %v", p, ok)
	}
	if r, ok := p.Ref("service"); !ok || r.To != wire.TypeService || r.From != wire.TypePlugin {
		t.Errorf("plugins.service = %+v, %v", r, ok)
	}
	if _, ok := p.Ref("upstream"); ok {
		t.Error("plugins.upstream found")
	}
	if s, _ := Lookup(wire.TypeService); len(s.Cascades()) != 0 {
		t.Errorf("services cascade: %v", s.Cascades())
	}
	if _, ok := Lookup("nope"); ok {
		t.Error("Lookup(nope) found")
	}
	// Callers get copies.
	Types()[0].Name = "x"
	p.Refs[0].To = "x"
	if q, _ := Lookup(wire.TypePlugin); Types()[0].Name == "x" || q.Refs[0].To == "x" {
		t.Error("a caller changed the graph")
	}
}
