package api

import (
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func TestOpenAPIIsValid(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, ep := range endpoints() {
		p := paramRe.ReplaceAllString(ep.path, "{$1}")
		if doc.Paths.Find(p) == nil || doc.Paths.Find(p+"/{id}") == nil {
			t.Errorf("%s is not described", ep.path)
		}
	}
}
