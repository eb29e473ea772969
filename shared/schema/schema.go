// Package schema is the entity graph of a deltaplane configuration, written
// once: the entity types (named as wire's Type* constants), the references
// between them (the field, the referenced type, what deleting the
// referenced entity does, whether the reference is required, one id or a
// list of ids), and how children nest under their parents (the Admin API's
// nested endpoints, /services/{id}/routes, and the child keys of a
// declarative file, services[].routes).
//
// Everything that needs the graph derives it from here: admin-api's entity
// descriptors (their reference fields), its nested endpoints, declarative
// flattening and cascading deletes, and e2e/checker's model of cascades.
// Field-level facts (kinds, defaults, validation) are not the graph's and
// stay with the entity descriptors.
package schema

import "github.com/deltaplane/deltaplane/shared/wire"

// OnDelete is what deleting a referenced entity does to the entities that
// reference it.
type OnDelete int

const (
	// Restrict refuses the delete while a reference exists.
	Restrict OnDelete = iota
	// Cascade deletes the referencing entities with it (and, in turn,
	// theirs).
	Cascade
)

func (d OnDelete) String() string {
	if d == Cascade {
		return "cascade"
	}
	return "restrict"
}

// Ref is one reference of a type From to a type To.
type Ref struct {
	From  string // the referencing type
	Field string // its field: {"id": "<uuid>"} or null, a list of ids when List
	To    string // the referenced type
	// OnDelete is what deleting the referenced entity does (a list is
	// always Restrict).
	OnDelete OnDelete
	Required bool // the field cannot be null
	List     bool // an array of ids instead of one {"id": ...}
	// Endpoint is the collection segment of the nested endpoint that lists
	// From's entities referencing one To entity, /<To>/{id}/<Endpoint>;
	// "" when there is none.
	Endpoint string
	// Child is the key under which a declarative file nests From's
	// entities inside a To entity (services[].routes); "" when it cannot.
	Child string
}

// Type is one entity type and its outgoing references.
type Type struct {
	Name string // wire.Type*
	// Path is the collection segment of its top-level Admin API URL
	// (/services, /key-auths).
	Path string
	Refs []Ref
}

// Ref returns t's reference through field.
func (t Type) Ref(field string) (Ref, bool) {
	for _, r := range t.Refs {
		if r.Field == field {
			return r, true
		}
	}
	return Ref{}, false
}

// Cascades lists t's references whose deletion deletes a t entity.
func (t Type) Cascades() []Ref {
	var out []Ref
	for _, r := range t.Refs {
		if r.OnDelete == Cascade {
			out = append(out, r)
		}
	}
	return out
}

// types is the graph, referenced types before the types referencing them.
var types = []Type{
	{Name: wire.TypeCertificate, Path: "certificates"},
	{Name: wire.TypeCACertificate, Path: "ca_certificates"},
	{Name: wire.TypeService, Path: "services", Refs: []Ref{
		{Field: "client_certificate", To: wire.TypeCertificate},
		{Field: "ca_certificates", To: wire.TypeCACertificate, List: true},
	}},
	{Name: wire.TypeRoute, Path: "routes", Refs: []Ref{
		{Field: "service", To: wire.TypeService, Endpoint: "routes", Child: "routes"},
	}},
	{Name: wire.TypeConsumer, Path: "consumers"},
	{Name: wire.TypeUpstream, Path: "upstreams", Refs: []Ref{
		{Field: "client_certificate", To: wire.TypeCertificate},
	}},
	{Name: wire.TypeTarget, Path: "targets", Refs: []Ref{
		{Field: "upstream", To: wire.TypeUpstream, OnDelete: Cascade, Required: true, Endpoint: "targets", Child: "targets"},
	}},
	{Name: wire.TypeSNI, Path: "snis", Refs: []Ref{
		{Field: "certificate", To: wire.TypeCertificate, Required: true, Endpoint: "snis", Child: "snis"},
	}},
	{Name: wire.TypeKeyAuth, Path: "key-auths", Refs: []Ref{
		{Field: "consumer", To: wire.TypeConsumer, OnDelete: Cascade, Required: true, Endpoint: "key-auth", Child: "keyauth_credentials"},
	}},
	{Name: wire.TypePlugin, Path: "plugins", Refs: []Ref{
		{Field: "route", To: wire.TypeRoute, OnDelete: Cascade, Endpoint: "plugins", Child: "plugins"},
		{Field: "service", To: wire.TypeService, OnDelete: Cascade, Endpoint: "plugins", Child: "plugins"},
		{Field: "consumer", To: wire.TypeConsumer, OnDelete: Cascade, Endpoint: "plugins", Child: "plugins"},
	}},
}

// all is types with each Ref's From set.
var all = func() []Type {
	out := make([]Type, len(types))
	for i, t := range types {
		t.Refs = append([]Ref(nil), t.Refs...)
		for j := range t.Refs {
			t.Refs[j].From = t.Name
		}
		out[i] = t
	}
	return out
}()

// Types lists every entity type, each after the types it references (the
// order to insert in; deletes go in reverse). The slices are copies.
func Types() []Type {
	out := make([]Type, len(all))
	for i, t := range all {
		t.Refs = append([]Ref(nil), t.Refs...)
		out[i] = t
	}
	return out
}

// Lookup returns the type named name.
func Lookup(name string) (Type, bool) {
	for _, t := range all {
		if t.Name == name {
			t.Refs = append([]Ref(nil), t.Refs...)
			return t, true
		}
	}
	return Type{}, false
}

// RefsTo lists every reference to the type named to, in Types order: the
// entities a delete of a to entity cascades to or is restricted by.
func RefsTo(to string) []Ref {
	var out []Ref
	for _, t := range all {
		for _, r := range t.Refs {
			if r.To == to {
				out = append(out, r)
			}
		}
	}
	return out
}

// Nested lists the references that have a nested endpoint, in Types order.
func Nested() []Ref {
	var out []Ref
	for _, t := range all {
		for _, r := range t.Refs {
			if r.Endpoint != "" {
				out = append(out, r)
			}
		}
	}
	return out
}

// Children lists the references through which a declarative file nests
// children inside an entity of the type named parent, in Types order.
func Children(parent string) []Ref {
	var out []Ref
	for _, r := range RefsTo(parent) {
		if r.Child != "" {
			out = append(out, r)
		}
	}
	return out
}

// Collection returns the entity type an Admin API path segment names: a
// top-level collection (/key-auths) or a nested one (/consumers/{c}/key-auth).
func Collection(segment string) (string, bool) {
	for _, t := range all {
		if t.Path == segment {
			return t.Name, true
		}
	}
	for _, r := range Nested() {
		if r.Endpoint == segment {
			return r.From, true
		}
	}
	return "", false
}
