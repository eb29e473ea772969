package api

import (
	"slices"
	"testing"
)

// TestEndpoints: the collection URLs the entity graph gives, each with the
// type it serves and, when nested, the parent type and the scoping field.
func TestEndpoints(t *testing.T) {
	want := []string{
		"/certificates certificates",
		"/ca_certificates ca_certificates",
		"/services services",
		"/routes routes",
		"/consumers consumers",
		"/upstreams upstreams",
		"/targets targets",
		"/snis snis",
		"/key-auths keyauth_credentials",
		"/plugins plugins",
		"/services/:parent/routes routes services.service",
		"/upstreams/:parent/targets targets upstreams.upstream",
		"/certificates/:parent/snis snis certificates.certificate",
		"/consumers/:parent/key-auth keyauth_credentials consumers.consumer",
		"/routes/:parent/plugins plugins routes.route",
		"/services/:parent/plugins plugins services.service",
		"/consumers/:parent/plugins plugins consumers.consumer",
	}
	var got []string
	for _, ep := range endpoints() {
		s := ep.path + " " + ep.t.Name
		if ep.parent != nil {
			s += " " + ep.parent.Name + "." + ep.field
		}
		got = append(got, s)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("endpoints:\n got %q\nwant %q", got, want)
	}
}

// TestReferencedEndpoints: one single-parent sub-resource per foreign
// field of the entity graph, as Kong generates them.
func TestReferencedEndpoints(t *testing.T) {
	want := []string{
		"/services/:id/client_certificate certificates",
		"/routes/:id/service services",
		"/upstreams/:id/client_certificate certificates",
		"/targets/:id/upstream upstreams",
		"/snis/:id/certificate certificates",
		"/key-auths/:id/consumer consumers",
		"/plugins/:id/route routes",
		"/plugins/:id/service services",
		"/plugins/:id/consumer consumers",
	}
	var got []string
	for _, r := range referencedEndpoints() {
		got = append(got, r.path+" "+r.target().Name)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("referenced endpoints:\n got %q\nwant %q", got, want)
	}
}
