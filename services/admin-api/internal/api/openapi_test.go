package api

import (
	"bytes"
	"os"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/santhosh-tekuri/jsonschema/v6"
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

// TestOpenAPIMatchesOASSchema validates the document against the OpenAPI
// Initiative's JSON Schema of OpenAPI 3.0 (2021-09-28, the one
// openapi-spec-validator and schemathesis load with), which is stricter
// than kin-openapi's loader (it refuses "parameters": null).
func TestOpenAPIMatchesOASSchema(t *testing.T) {
	raw, err := os.ReadFile("testdata/oas-3.0-schema.json")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("oas-3.0.json", meta); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("oas-3.0.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(OpenAPI()))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(doc); err != nil {
		t.Fatalf("/openapi.json is not a valid OpenAPI 3.0 document:\n%v", err)
	}
}
