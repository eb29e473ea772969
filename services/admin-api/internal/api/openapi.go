package api

import (
	"net/http"
	"regexp"
	"sync"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/labstack/echo/v4"
)

// The OpenAPI 3 description is generated from the entity descriptors and
// the endpoint table, so it cannot drift from what the API serves.

func fieldSchema(f entity.Field) map[string]any {
	var s map[string]any
	switch f.Kind {
	case entity.String:
		s = map[string]any{"type": "string"}
		if len(f.Enum) > 0 {
			s["enum"] = f.Enum
		}
	case entity.Integer:
		s = map[string]any{"type": "integer"}
	case entity.Number:
		s = map[string]any{"type": "number"}
	case entity.Boolean:
		s = map[string]any{"type": "boolean"}
	case entity.Array, entity.Set:
		s = map[string]any{"type": "array", "items": fieldSchema(*f.Elem)}
	case entity.Map:
		s = map[string]any{"type": "object", "additionalProperties": fieldSchema(*f.Elem)}
	case entity.Record:
		s = map[string]any{"type": "object"}
		if len(f.Fields) > 0 {
			props := map[string]any{}
			for _, sf := range f.Fields {
				props[sf.Name] = fieldSchema(sf)
			}
			s["properties"] = props
		}
	case entity.Foreign:
		s = map[string]any{"type": "object", "properties": map[string]any{"id": map[string]any{"type": "string", "format": "uuid"}},
			"required": []string{"id"}, "additionalProperties": false}
	case entity.JSON:
		s = map[string]any{}
	}
	if !f.Required && f.Name != "id" && f.Name != "created_at" && f.Name != "updated_at" {
		s["nullable"] = true
	}
	if f.Name != "" && f.Elem == nil && f.Kind == entity.Array {
		s["items"] = map[string]any{}
	}
	return s
}

func entitySchema(t *entity.Type) map[string]any {
	props := map[string]any{}
	var req []string
	for _, f := range t.Fields {
		props[f.Name] = fieldSchema(f)
		req = append(req, f.Name)
	}
	return map[string]any{"type": "object", "properties": props, "required": req, "additionalProperties": false}
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

func jsonContent(schema map[string]any) map[string]any {
	return map[string]any{"application/json": map[string]any{"schema": schema}}
}

func resp(desc string, schema map[string]any) map[string]any {
	r := map[string]any{"description": desc}
	if schema != nil {
		r["content"] = jsonContent(schema)
	}
	return r
}

var paramRe = regexp.MustCompile(`:([a-z]+)`)

func buildOpenAPI() map[string]any {
	schemas := map[string]any{
		"Error": map[string]any{"type": "object", "required": []string{"message"}, "properties": map[string]any{
			"message": map[string]any{"type": "string"}, "name": map[string]any{"type": "string"},
			"code": map[string]any{"type": "integer"}, "fields": map[string]any{"type": "object"},
		}},
		"DataPlane": map[string]any{"type": "object", "required": []string{"id", "sync_status", "last_seen", "ttl", "applied_version", "versions_behind", "seconds_behind"},
			"properties": map[string]any{
				"id": map[string]any{"type": "string"}, "ip": map[string]any{"type": "string"}, "hostname": map[string]any{"type": "string"},
				"version": map[string]any{"type": "string"}, "sync_status": map[string]any{"type": "string"},
				"config_hash": map[string]any{"type": "string"}, "last_seen": map[string]any{"type": "integer"}, "ttl": map[string]any{"type": "integer"},
				"sync_mode": map[string]any{"type": "string"}, "applied_version": map[string]any{"type": "integer"},
				"latest_version": map[string]any{"type": "integer"}, "versions_behind": map[string]any{"type": "integer"},
				"seconds_behind": map[string]any{"type": "number"}, "resyncs": map[string]any{"type": "integer"},
				"errors": map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
			}},
	}
	errResp := func(d string) map[string]any { return resp(d, ref("Error")) }
	paths := map[string]any{}
	anyBody := map[string]any{"content": jsonContent(map[string]any{"type": "object"})}
	for _, t := range entity.Types {
		schemas[t.Name] = entitySchema(t)
		schemas[t.Name+"_list"] = map[string]any{"type": "object", "required": []string{"data", "next"}, "properties": map[string]any{
			"data":   map[string]any{"type": "array", "items": ref(t.Name)},
			"next":   map[string]any{"type": "string", "nullable": true},
			"offset": map[string]any{"type": "string"},
		}}
	}
	params := func(p string) []any {
		var out []any
		for _, m := range paramRe.FindAllStringSubmatch(p, -1) {
			out = append(out, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		return out
	}
	oa := func(p string) string { return paramRe.ReplaceAllString(p, "{$1}") }
	for _, ep := range endpoints() {
		col := ep.path
		paths[oa(col)] = map[string]any{
			"parameters": params(col),
			"get": map[string]any{"summary": "List " + ep.t.Name, "parameters": []any{
				map[string]any{"name": "size", "in": "query", "schema": map[string]any{"type": "integer", "minimum": 1, "maximum": 1000}},
				map[string]any{"name": "offset", "in": "query", "schema": map[string]any{"type": "string"}},
				map[string]any{"name": "tags", "in": "query", "schema": map[string]any{"type": "string"}},
			}, "responses": map[string]any{"200": resp("a page", ref(ep.t.Name+"_list")), "400": errResp("bad size or offset"), "404": errResp("parent not found"), "503": errResp("database unavailable")}},
			"post": map[string]any{"summary": "Create a " + ep.t.Name + " entity", "requestBody": anyBody, "responses": map[string]any{
				"201": resp("created", ref(ep.t.Name)), "400": errResp("invalid"), "404": errResp("parent not found"), "409": errResp("unique violation"), "413": errResp("body too large"), "422": errResp("idempotency key reused"), "503": errResp("database unavailable")}},
		}
		item := col + "/:id"
		paths[oa(item)] = map[string]any{
			"parameters": params(item),
			"get":        map[string]any{"responses": map[string]any{"200": resp("the entity", ref(ep.t.Name)), "404": errResp("not found"), "503": errResp("database unavailable")}},
			"put":        map[string]any{"requestBody": anyBody, "responses": map[string]any{"200": resp("created or replaced", ref(ep.t.Name)), "400": errResp("invalid"), "404": errResp("not found"), "409": errResp("unique violation"), "413": errResp("body too large"), "503": errResp("database unavailable")}},
			"patch":      map[string]any{"requestBody": anyBody, "responses": map[string]any{"200": resp("updated", ref(ep.t.Name)), "400": errResp("invalid"), "404": errResp("not found"), "409": errResp("unique violation"), "413": errResp("body too large"), "503": errResp("database unavailable")}},
			"delete":     map[string]any{"responses": map[string]any{"204": resp("deleted (or absent)", nil), "400": errResp("referenced"), "503": errResp("database unavailable")}},
		}
	}
	obj := map[string]any{"type": "object"}
	paths["/"] = map[string]any{"get": map[string]any{"responses": map[string]any{"200": resp("node information", map[string]any{"type": "object", "required": []string{"version", "tagline", "configuration"}, "properties": map[string]any{
		"version": map[string]any{"type": "string"}, "tagline": map[string]any{"type": "string"}, "configuration": obj}})}}}
	paths["/health"] = map[string]any{"get": map[string]any{"responses": map[string]any{"200": resp("healthy", obj), "503": resp("database unreachable", obj)}}}
	paths["/status"] = map[string]any{"get": map[string]any{"responses": map[string]any{"200": resp("status", map[string]any{"type": "object", "required": []string{"database"}, "properties": map[string]any{
		"database": map[string]any{"type": "object", "required": []string{"reachable"}, "properties": map[string]any{"reachable": map[string]any{"type": "boolean"}}},
		"outbox": map[string]any{"type": "object", "properties": map[string]any{
			"backlog": map[string]any{"type": "integer"}, "last_tx": map[string]any{"type": "integer"},
			"last_published_tx": map[string]any{"type": "integer"}, "last_published_at": map[string]any{"type": "string", "nullable": true}}}}})}}}
	paths["/config"] = map[string]any{
		"get": map[string]any{"responses": map[string]any{"200": resp("the configuration as declarative YAML", map[string]any{"type": "object", "required": []string{"config"}, "properties": map[string]any{"config": map[string]any{"type": "string"}}})}},
		"post": map[string]any{"requestBody": map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": obj}, "application/yaml": map[string]any{"schema": map[string]any{"type": "string"}}}},
			"responses": map[string]any{"201": resp("applied", map[string]any{"type": "object", "required": []string{"changes"}, "properties": map[string]any{
				"changes": map[string]any{"type": "integer"}, "inserted": map[string]any{"type": "integer"}, "updated": map[string]any{"type": "integer"},
				"deleted": map[string]any{"type": "integer"}, "unchanged": map[string]any{"type": "integer"}}}), "400": errResp("invalid declarative configuration"), "413": errResp("body too large"), "503": errResp("database unavailable")}},
	}
	paths["/clustering/data-planes"] = map[string]any{"get": map[string]any{"responses": map[string]any{"200": resp("data planes", map[string]any{"type": "object", "required": []string{"data"}, "properties": map[string]any{
		"data": map[string]any{"type": "array", "items": ref("DataPlane")}, "next": map[string]any{"type": "string", "nullable": true}}})}}}
	paths["/clustering/status"] = map[string]any{"get": map[string]any{"responses": map[string]any{"200": resp("data planes by id", map[string]any{"type": "object", "additionalProperties": obj})}}}
	paths["/openapi.json"] = map[string]any{"get": map[string]any{"responses": map[string]any{"200": resp("this document", obj)}}}
	return map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]any{"title": "deltaplane Admin API", "version": Version, "description": "Kong-compatible Admin API of the deltaplane control plane."},
		"paths":   paths,
		"components": map[string]any{"schemas": schemas, "securitySchemes": map[string]any{
			"adminToken": map[string]any{"type": "apiKey", "in": "header", "name": "Kong-Admin-Token"}}},
	}
}

var (
	openAPIOnce sync.Once
	openAPIDoc  []byte
)

// OpenAPI returns the OpenAPI 3 document of the Admin API.
func OpenAPI() []byte {
	openAPIOnce.Do(func() {
		b, err := jsonMarshal(buildOpenAPI())
		if err != nil {
			panic(err)
		}
		openAPIDoc = b
	})
	return openAPIDoc
}

func (a *API) openAPI(c echo.Context) error { return c.JSONBlob(http.StatusOK, OpenAPI()) }
