//go:build integration

package api_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/api"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// TestResponsesMatchOpenAPI sends real requests and validates every
// response (status, headers, body) against /openapi.json.
func TestResponsesMatchOpenAPI(t *testing.T) {
	e := setup(t, false)
	resp, err := http.Get(e.url + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(spec, api.OpenAPI()) {
		t.Fatal("served document differs from api.OpenAPI()")
	}
	doc, err := openapi3.NewLoader().LoadFromData(spec)
	if err != nil {
		t.Fatal(err)
	}
	doc.Servers = openapi3.Servers{{URL: e.url}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := selfSigned(t, false)
	steps := []struct{ method, path, body string }{
		{"GET", "/", ""},
		{"GET", "/status", ""},
		{"GET", "/health", ""},
		{"POST", "/services", `{"name":"s","url":"https://s.internal/x","tags":["a"]}`},
		{"POST", "/services", `{"name":"s","host":"dup"}`},
		{"POST", "/services", `{"port":"x"}`},
		{"GET", "/services/s", ""},
		{"GET", "/services/none", ""},
		{"GET", "/services/a%00b", ""},
		{"GET", "/routes/a%00b/service", ""},
		{"PATCH", "/services/s", `{"retries":1}`},
		{"PUT", "/services/t", `{"host":"t.internal"}`},
		{"POST", "/services/s/routes", `{"name":"r","paths":["/r"],"headers":{"x-a":["1"]},"methods":["GET"]}`},
		{"POST", "/routes", `{"name":"r2","protocols":["tcp"],"sources":[{"ip":"10.0.0.0/8","port":80}]}`},
		{"GET", "/routes?size=1", ""},
		{"GET", "/services/s/routes", ""},
		{"POST", "/routes/r/plugins", `{"name":"rate-limiting","config":{"minute":1}}`},
		{"POST", "/consumers", `{"username":"u"}`},
		{"POST", "/consumers/u/key-auth", `{}`},
		{"POST", "/consumers/u/plugins", `{"name":"key-auth"}`},
		{"GET", "/plugins", ""},
		{"GET", "/key-auths", ""},
		{"POST", "/upstreams", `{"name":"up.internal"}`},
		{"POST", "/upstreams/up.internal/targets", `{"target":"10.1.1.1:80"}`},
		{"GET", "/upstreams/up.internal/targets", ""},
		{"POST", "/certificates", js(map[string]any{"cert": cert, "key": key})},
		{"GET", "/certificates", ""},
		{"GET", "/snis", ""},
		{"GET", "/ca_certificates", ""},
		{"GET", "/tags", ""},
		{"GET", "/tags/a?size=1", ""},
		{"GET", "/schemas/services", ""},
		{"GET", "/schemas/none", ""},
		{"POST", "/schemas/routes/validate", `{"paths":["/v"]}`},
		{"POST", "/schemas/routes/validate", `{"paths":"x"}`},
		{"GET", "/routes/r/service", ""},
		{"PATCH", "/routes/r/service", `{"retries":2}`},
		{"PUT", "/routes/r2/service", `{"host":"made.internal"}`},
		{"DELETE", "/routes/r/service", ""},
		{"GET", "/plugins/enabled", ""},
		{"GET", "/schemas/plugins/key-auth", ""},
		{"DELETE", "/services/s", ""},
		{"DELETE", "/routes/r", ""},
		{"GET", "/config", ""},
		{"POST", "/config", `{"_format_version":"3.0","services":[{"name":"only","host":"o.internal"}]}`},
		{"POST", "/config", `{"_format_version":"1.0"}`},
		{"GET", "/clustering/data-planes", ""},
		{"GET", "/clustering/status", ""},
	}
	for _, s := range steps {
		req, _ := http.NewRequest(s.method, e.url+s.path, bytes.NewBufferString(s.body))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Errorf("%s %s: not in the document: %v", s.method, s.path, err)
			continue
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{ExcludeRequestBody: true}}
		err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: res.StatusCode, Header: res.Header, Body: io.NopCloser(bytes.NewReader(body)),
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		})
		if err != nil {
			t.Errorf("%s %s -> %d: %v\n%s", s.method, s.path, res.StatusCode, err, body)
		}
	}
}
