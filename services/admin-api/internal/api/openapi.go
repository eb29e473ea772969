package api

import (
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/labstack/echo/v4"
)

// The OpenAPI 3 description is generated from the entity descriptors and
// the endpoint table, so it cannot drift from what the API serves.

// fieldSchema is the schema of a field's value in a response: every
// field present, null when unset and not required.
func fieldSchema(f entity.Field) map[string]any {
	return valueSchema(f, false)
}

// valueSchema is the schema of a field's value; in a request (req) the
// constraints the descriptor checks are stated (minLength, minimum,
// maximum, enum), foreign references may name their target by endpoint
// key, and records list the fields they accept.
func valueSchema(f entity.Field, req bool) map[string]any {
	var s map[string]any
	switch f.Kind {
	case entity.String:
		s = map[string]any{"type": "string"}
		if len(f.Enum) > 0 {
			s["enum"] = f.Enum
		}
		if req {
			s["minLength"] = 1
			if pat := stringPattern(f); pat != "" && len(f.Enum) == 0 {
				s["pattern"] = pat
			}
		}
	case entity.Integer:
		s = map[string]any{"type": "integer"}
		if len(f.Enum) > 0 {
			s["enum"] = intEnum(f.Enum)
		}
		if f.Min != nil {
			s["minimum"] = *f.Min
		}
		if f.Max != nil {
			s["maximum"] = *f.Max
		}
	case entity.Number:
		s = map[string]any{"type": "number"}
	case entity.Boolean:
		s = map[string]any{"type": "boolean"}
	case entity.Array, entity.Set:
		s = map[string]any{"type": "array", "items": map[string]any{}}
		if f.Elem != nil {
			el := *f.Elem
			el.Required = true // an array element is never null
			items := valueSchema(el, req)
			if req && f.Ref != nil && f.Ref.List {
				items["format"] = "uuid" // a reference list holds ids
			}
			s["items"] = items
		}
	case entity.Map:
		el := *f.Elem
		el.Required = true
		s = map[string]any{"type": "object", "additionalProperties": valueSchema(el, req)}
	case entity.Record:
		s = map[string]any{"type": "object"}
		if len(f.Fields) > 0 {
			props := map[string]any{}
			for _, sf := range f.Fields {
				props[sf.Name] = valueSchema(sf, req)
			}
			s["properties"] = props
			if req && !f.Loose {
				s["additionalProperties"] = false
			}
		}
	case entity.Foreign:
		id := map[string]any{"type": "object", "properties": map[string]any{"id": map[string]any{"type": "string", "format": "uuid"}},
			"required": []string{"id"}, "additionalProperties": false}
		s = id
		if req && f.Ref != nil {
			if rt, ok := entity.Lookup(f.Ref.To); ok && rt.Endpoint != "" {
				// {"id": ...} or the target's endpoint key ({"name": ...});
				// the id wins when both are given, and the API takes
				// "name" and "username" keys on any reference.
				key := map[string]any{"type": "string", "minLength": 1}
				s = map[string]any{"type": "object", "additionalProperties": false,
					"properties": map[string]any{"id": map[string]any{"type": "string", "format": "uuid"}, "name": key, "username": key},
					"anyOf":      []any{map[string]any{"required": []string{"id"}}, map[string]any{"required": []string{rt.Endpoint}}}}
			}
		}
	case entity.JSON:
		s = map[string]any{}
	}
	if !f.Required && f.Name != "id" && f.Name != "created_at" && f.Name != "updated_at" {
		s["nullable"] = true
	}
	return s
}

// intEnum is an integer field's Enum as numbers.
func intEnum(enum []string) []any {
	out := make([]any, 0, len(enum))
	for _, e := range enum {
		n, _ := strconv.ParseInt(e, 10, 64)
		out = append(out, n)
	}
	return out
}

// Patterns of strings that a descriptor's Check accepts, by the check:
// the descriptors' checks are code, so each pattern is stated here, and
// TestRequestPatternsAgreeWithDescriptors holds them to the checks (every
// sample a pattern matches is accepted, every other rejected). They let a
// generator produce values the API accepts; a pattern may be narrower
// than its check (non-ASCII names, IPs as hosts), never wider.
var (
	patName   = `^[A-Za-z0-9._~-]+$`
	patHost   = `^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?){0,3}$`
	patPath   = `^(/[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,15}){0,4}/?$`
	patMethod = `^[A-Z]{1,10}$`
	patTag    = `^[A-Za-z0-9._~:= -]+$`
	patTarget = `^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?){0,3}(:[1-9][0-9]{0,3})?$`
)

// fieldPatterns names the pattern of each checked string field:
// "<type>.<field>" (an element of an array field: "<type>.<field>[]").
var fieldPatterns = map[string]string{
	"services.name": patName, "services.host": patHost, "services.path": patPath,
	"routes.name": patName, "routes.hosts[]": patHost, "routes.paths[]": patPath, "routes.methods[]": patMethod, "routes.snis[]": patHost,
	"upstreams.name": patHost, "upstreams.host_header": patHost, "upstreams.hash_on_cookie_path": patPath,
	"targets.target": patTarget, "snis.name": patHost, "certificates.snis[]": patHost,
}

// stringPattern is the pattern of f (named "<type>.<field>" or with "[]"
// by requestSchema), "" when its values are free.
func stringPattern(f entity.Field) string {
	if f.Name == "tags[]" || strings.HasSuffix(f.Name, ".tags[]") {
		return patTag
	}
	return fieldPatterns[f.Name]
}

func entitySchema(t *entity.Type) map[string]any {
	props := map[string]any{}
	var req []string
	for _, f := range t.Fields {
		props[f.Name] = fieldSchema(f)
		req = append(req, f.Name)
	}
	if t == entity.Certificate {
		// Kong's certificates answer with their SNIs' names (package app).
		props["snis"] = map[string]any{"type": "array", "items": map[string]any{"type": "string"}}
		req = append(req, "snis")
	}
	return map[string]any{"type": "object", "properties": props, "required": req, "additionalProperties": false}
}

// requestSchema is the body of a write of t: the fields a client may
// send, with the descriptor's constraints. A create (POST, PUT) requires
// the fields that are required and have no default, except skip (the
// field a nested URL sets); an update (PATCH) requires none.
func requestSchema(t *entity.Type, create bool, skip string) map[string]any {
	props := map[string]any{}
	var req []string
	for _, f := range t.Fields {
		switch {
		case f.Name == "id":
			if create {
				// a client-chosen id on POST; PUT and PATCH take it from the URL
				props[f.Name] = map[string]any{"type": "string", "format": "uuid"}
			}
			continue
		case f.ReadOnly:
			props[f.Name] = map[string]any{"type": "integer"} // accepted and ignored
			continue
		}
		props[f.Name] = valueSchema(qualified(t, f), true)
		if create && f.Required && f.Default == nil && f.Name != skip {
			req = append(req, f.Name)
		}
	}
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if t == entity.Certificate {
		// the names of the certificate's SNIs, created with it (package app)
		props["snis"] = map[string]any{"type": "array", "nullable": true, "uniqueItems": true,
			"items": map[string]any{"type": "string", "minLength": 1, "pattern": patHost}}
	}
	if t == entity.Consumer && create {
		// the descriptor's entity check: a username or a custom_id
		nonNull := func(f string) map[string]any {
			return map[string]any{"required": []string{f}, "properties": map[string]any{f: map[string]any{"type": "string"}}}
		}
		s["anyOf"] = []any{nonNull("username"), nonNull("custom_id")}
	}
	if t == entity.Service {
		// url is shorthand for protocol, host, port and path.
		props["url"] = map[string]any{"type": "string", "format": "uri"}
		req = slices.DeleteFunc(req, func(n string) bool { return n == "host" })
		if create {
			s["anyOf"] = []any{map[string]any{"required": []string{"host"}}, map[string]any{"required": []string{"url"}}}
		}
	}
	if len(req) > 0 {
		s["required"] = req
	}
	if t == entity.Plugin {
		return pluginRequestSchema(s)
	}
	return s
}

// withoutID is a create schema (or a reference to one) without the id
// property: a PUT's id is its URL's (a different one in the body is a 400).
func withoutID(schema map[string]any, schemas map[string]any) map[string]any {
	if r, ok := schema["$ref"].(string); ok {
		schema = schemas[strings.TrimPrefix(r, "#/components/schemas/")].(map[string]any)
	}
	out := map[string]any{}
	for k, v := range schema {
		out[k] = v
	}
	if props, ok := schema["properties"].(map[string]any); ok {
		p := map[string]any{}
		for k, v := range props {
			if k != "id" {
				p[k] = v
			}
		}
		out["properties"] = p
	}
	if alts, ok := schema["oneOf"].([]any); ok {
		var na []any
		for _, a := range alts {
			na = append(na, withoutID(a.(map[string]any), schemas))
		}
		out["oneOf"] = na
	}
	return out
}

// qualified is f named "<type>.<field>" and its element "<type>.<field>[]",
// the keys of fieldPatterns.
func qualified(t *entity.Type, f entity.Field) entity.Field {
	f.Name = t.Name + "." + f.Name
	if f.Elem != nil {
		el := *f.Elem
		el.Name = f.Name + "[]"
		f.Elem = &el
	}
	return f
}

// pluginRequestSchema narrows a plugin body by its name: one alternative
// per plugin schema deltaplane knows, with that plugin's config fields.
func pluginRequestSchema(base map[string]any) map[string]any {
	names := make([]string, 0, len(entity.PluginSchemas))
	for n := range entity.PluginSchemas {
		names = append(names, n)
	}
	sort.Strings(names)
	var alts []any
	for _, n := range names {
		props := map[string]any{}
		for k, v := range base["properties"].(map[string]any) {
			props[k] = v
		}
		props["name"] = map[string]any{"type": "string", "enum": []string{n}}
		props["config"] = valueSchema(entity.Field{Name: "config", Kind: entity.Record, Fields: entity.PluginSchemas[n]}, true)
		alt := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if r, ok := base["required"]; ok {
			alt["required"] = r
		}
		alts = append(alts, alt)
	}
	return map[string]any{"oneOf": alts}
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

// responses is an operation's responses: the given ones and the answers
// every operation can give (400 for a NUL character in the URL or a
// header, 401 with ADMIN_TOKEN set, 503 when Postgres is unreachable).
func responses(rs map[string]any) map[string]any {
	if _, ok := rs["400"]; !ok {
		rs["400"] = resp("a NUL character in the URL or a header", ref("Error"))
	}
	if _, ok := rs["401"]; !ok {
		rs["401"] = resp("missing or wrong admin token", ref("Error"))
	}
	if _, ok := rs["503"]; !ok {
		rs["503"] = resp("database unavailable", ref("Error"))
	}
	return rs
}

func errResp(d string) map[string]any { return resp(d, ref("Error")) }

// pathParams are the path parameters of an echo path ("/services/:id").
func pathParams(p string) []any {
	var out []any
	for _, m := range paramRe.FindAllStringSubmatch(p, -1) {
		out = append(out, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
	}
	return out
}

// oaPath turns an echo path into an OpenAPI one (/services/{id}).
func oaPath(p string) string { return paramRe.ReplaceAllString(p, "{$1}") }

// pathItem is a path's operations with its parameters (omitted when it has
// none: OpenAPI wants an array or nothing).
func pathItem(p string, ops map[string]any) map[string]any {
	if ps := pathParams(p); len(ps) > 0 {
		ops["parameters"] = ps
	}
	return ops
}

func body(schema map[string]any) map[string]any {
	return map[string]any{"content": jsonContent(schema)}
}

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
	paths := map[string]any{}
	for _, t := range entity.Types {
		schemas[t.Name] = entitySchema(t)
		schemas[t.Name+"_list"] = map[string]any{"type": "object", "required": []string{"data", "next"}, "properties": map[string]any{
			"data":   map[string]any{"type": "array", "items": ref(t.Name)},
			"next":   map[string]any{"type": "string", "nullable": true},
			"offset": map[string]any{"type": "string"},
		}}
		schemas[t.Name+"_create"] = requestSchema(t, true, "")
		schemas[t.Name+"_update"] = requestSchema(t, false, "")
	}
	listParams := []any{
		map[string]any{"name": "size", "in": "query", "schema": map[string]any{"type": "integer", "minimum": 1, "maximum": 1000}},
		map[string]any{"name": "offset", "in": "query", "schema": map[string]any{"type": "string", "minLength": 1}},
		map[string]any{"name": "tags", "in": "query", "schema": map[string]any{"type": "string"}},
	}
	for _, ep := range endpoints() {
		n := ep.t.Name
		create := ref(n + "_create")
		if ep.parent != nil {
			create = requestSchema(ep.t, true, ep.field)
		}
		missing := "not found"
		if ep.parent != nil {
			missing = "not found, or the parent in the URL not found"
		}
		col := ep.path
		list := map[string]any{"200": resp("a page", ref(n+"_list")), "400": errResp("bad size, offset or tags")}
		post := map[string]any{"201": resp("created", ref(n)), "400": errResp("invalid entity or body"), "409": errResp("unique constraint violation"),
			"413": errResp("body too large"), "422": errResp("Idempotency-Key used for a different request")}
		if ep.parent != nil {
			list["404"] = errResp("parent not found")
			post["404"] = errResp("parent not found")
		}
		paths[oaPath(col)] = pathItem(col, map[string]any{
			"get":  map[string]any{"summary": "List " + n, "parameters": listParamsOf(ep, listParams), "responses": responses(list)},
			"post": map[string]any{"summary": "Create a " + n + " entity", "parameters": []any{idempotencyKey}, "requestBody": body(create), "responses": responses(post)},
		})
		item := col + "/:id"
		write := func(ok string, schema map[string]any) map[string]any {
			return map[string]any{"parameters": []any{idempotencyKey}, "requestBody": body(schema), "responses": responses(map[string]any{
				"200": resp(ok, ref(n)), "400": errResp("invalid entity or body"), "404": errResp(missing), "409": errResp("unique constraint violation"),
				"413": errResp("body too large"), "422": errResp("Idempotency-Key used for a different request")})}
		}
		del := map[string]any{"204": resp("deleted (or absent)", nil), "400": errResp("still referenced, or invalid body"),
			"413": errResp("body too large"), "422": errResp("Idempotency-Key used for a different request")}
		if ep.parent != nil {
			del["404"] = errResp("parent not found")
		}
		paths[oaPath(item)] = pathItem(item, map[string]any{
			"get":    map[string]any{"responses": responses(map[string]any{"200": resp("the entity", ref(n)), "404": errResp(missing)})},
			"put":    write("created or replaced", withoutID(create, schemas)),
			"patch":  write("updated", ref(n+"_update")),
			"delete": map[string]any{"parameters": []any{idempotencyKey}, "responses": responses(del)},
		})
	}
	obj := map[string]any{"type": "object"}
	kongPaths(paths, schemas)
	paths["/"] = map[string]any{"get": map[string]any{"responses": responses(map[string]any{"200": resp("node information", map[string]any{"type": "object", "required": []string{"version", "tagline", "configuration"}, "properties": map[string]any{
		"version": map[string]any{"type": "string"}, "tagline": map[string]any{"type": "string"}, "configuration": obj}})})}}
	paths["/health"] = map[string]any{"get": map[string]any{"responses": map[string]any{"200": resp("healthy", obj), "400": errResp("a NUL character in the URL or a header"), "503": resp("database unreachable", obj)}}}
	paths["/status"] = map[string]any{"get": map[string]any{"responses": responses(map[string]any{"200": resp("status", map[string]any{"type": "object", "required": []string{"database"}, "properties": map[string]any{
		"database": map[string]any{"type": "object", "required": []string{"reachable"}, "properties": map[string]any{"reachable": map[string]any{"type": "boolean"}}},
		"outbox": map[string]any{"type": "object", "properties": map[string]any{
			"backlog": map[string]any{"type": "integer"}, "last_tx": map[string]any{"type": "integer"},
			"last_published_tx": map[string]any{"type": "integer"}, "last_published_at": map[string]any{"type": "string", "nullable": true}}}}})})}}
	paths["/config"] = map[string]any{
		"get": map[string]any{"responses": responses(map[string]any{"200": resp("the configuration as declarative YAML", map[string]any{"type": "object", "required": []string{"config"}, "properties": map[string]any{"config": map[string]any{"type": "string"}}})})},
		"post": map[string]any{"requestBody": map[string]any{"content": map[string]any{"application/json": map[string]any{"schema": declarativeSchema}, "application/yaml": map[string]any{"schema": map[string]any{"type": "string"}}}},
			"parameters": []any{idempotencyKey, map[string]any{"name": "dry_run", "in": "query", "schema": map[string]any{"type": "boolean"}}},
			"responses": responses(map[string]any{"200": resp("dry_run: what the import would change, nothing written", obj), "201": resp("applied", map[string]any{"type": "object", "required": []string{"changes"}, "properties": map[string]any{
				"changes": map[string]any{"type": "integer"}, "inserted": map[string]any{"type": "integer"}, "updated": map[string]any{"type": "integer"},
				"deleted": map[string]any{"type": "integer"}, "unchanged": map[string]any{"type": "integer"}}}), "400": errResp("invalid declarative configuration"),
				"413": errResp("body too large"), "422": errResp("Idempotency-Key used for a different request")})},
	}
	paths["/clustering/data-planes"] = map[string]any{"get": map[string]any{"responses": responses(map[string]any{"200": resp("data planes", map[string]any{"type": "object", "required": []string{"data"}, "properties": map[string]any{
		"data": map[string]any{"type": "array", "items": ref("DataPlane")}, "next": map[string]any{"type": "string", "nullable": true}}})})}}
	paths["/clustering/status"] = map[string]any{"get": map[string]any{"responses": responses(map[string]any{"200": resp("data planes by id", map[string]any{"type": "object", "additionalProperties": obj})})}}
	paths["/openapi.json"] = map[string]any{"get": map[string]any{"responses": responses(map[string]any{"200": resp("this document", obj)})}}
	paths["/plugins/enabled"] = map[string]any{"get": map[string]any{"responses": responses(map[string]any{"200": resp("the plugins admin-api accepts, built-in and custom", map[string]any{
		"type": "object", "required": []string{"enabled_plugins"}, "properties": map[string]any{"enabled_plugins": map[string]any{"type": "array", "items": map[string]any{"type": "string"}}}})})}}
	paths["/schemas/plugins/{name}"] = map[string]any{"get": map[string]any{"parameters": pathParams("/schemas/plugins/:name"),
		"responses": responses(map[string]any{"200": resp("the plugin's schema in Kong's shape", map[string]any{"type": "object", "required": []string{"fields"}}), "404": errResp("no plugin of that name")})}}
	links(paths)
	return map[string]any{
		"openapi":  "3.0.3",
		"info":     map[string]any{"title": "deltaplane Admin API", "version": Version, "description": "Kong-compatible Admin API of the deltaplane control plane."},
		"paths":    paths,
		"security": []any{map[string]any{}, map[string]any{"adminToken": []any{}}},
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

// listParamsOf is a list's query parameters: /consumers also takes
// custom_id (the consumer with that custom_id, or none).
func listParamsOf(ep endpoint, params []any) []any {
	if ep.t == entity.Consumer && ep.parent == nil {
		return append(slices.Clone(params), map[string]any{"name": "custom_id", "in": "query", "schema": map[string]any{"type": "string", "minLength": 1}})
	}
	return params
}

// declarativeSchema is a declarative configuration's top level: Kong's
// _format_version is required (the entities' keys are checked by the
// import, package declarative).
var declarativeSchema = map[string]any{"type": "object", "required": []string{"_format_version"}, "properties": map[string]any{
	"_format_version": map[string]any{"type": "string", "enum": []string{"1.1", "2.1", "3.0"}}}}

// idempotencyKey is the optional header of every write: a retry with the
// same key and request gets the first answer, with a different request 422.
var idempotencyKey = map[string]any{"name": "Idempotency-Key", "in": "header", "schema": map[string]any{"type": "string"}}

// kongPaths describes /tags, /schemas, the single-parent sub-resources,
// change tracking, the UI and /metrics.
func kongPaths(paths, schemas map[string]any) {
	str := map[string]any{"type": "string"}
	obj := map[string]any{"type": "object"}
	schemas["tag_list"] = map[string]any{"type": "object", "required": []string{"data", "next"}, "properties": map[string]any{
		"data": map[string]any{"type": "array", "items": map[string]any{"type": "object", "required": []string{"entity_name", "entity_id", "tag"},
			"additionalProperties": false, "properties": map[string]any{"entity_name": str, "entity_id": map[string]any{"type": "string", "format": "uuid"}, "tag": str}}},
		"next":   map[string]any{"type": "string", "nullable": true},
		"offset": str,
	}}
	schemas["kong_schema"] = map[string]any{"type": "object", "required": []string{"fields"}, "properties": map[string]any{
		"fields":        map[string]any{"type": "array", "items": map[string]any{"type": "object", "minProperties": 1, "maxProperties": 1}},
		"entity_checks": map[string]any{"type": "array", "items": obj},
	}}
	page := []any{
		map[string]any{"name": "size", "in": "query", "schema": map[string]any{"type": "integer", "minimum": 1, "maximum": 1000}},
		map[string]any{"name": "offset", "in": "query", "schema": map[string]any{"type": "string", "minLength": 1}},
	}
	tags := map[string]any{"get": map[string]any{"summary": "List tags of every entity", "parameters": page,
		"responses": responses(map[string]any{"200": resp("a page", ref("tag_list")), "400": errResp("bad size or offset")})}}
	paths["/tags"] = tags
	paths["/tags/{tag}"] = pathItem("/tags/:tag", map[string]any{"get": map[string]any{"summary": "List the entities with a tag", "parameters": page,
		"responses": responses(map[string]any{"200": resp("a page", ref("tag_list")), "400": errResp("bad size, offset or tag")})}})
	paths["/schemas/{entity}"] = pathItem("/schemas/:entity", map[string]any{"get": map[string]any{"summary": "An entity type's schema, Kong's shape",
		"responses": responses(map[string]any{"200": resp("the schema", ref("kong_schema")), "404": errResp("no such entity type")})}})
	paths["/schemas/{entity}/validate"] = pathItem("/schemas/:entity/validate", map[string]any{"post": map[string]any{"summary": "Check an entity without writing it",
		"requestBody": body(obj),
		"responses": responses(map[string]any{"200": resp("valid", map[string]any{"type": "object", "required": []string{"message"}, "properties": map[string]any{"message": str}}),
			"400": errResp("schema violation"), "404": errResp("no such entity type"), "413": errResp("body too large")})}})
	for _, r := range referencedEndpoints() {
		rt := r.target().Name
		write := func(ok string, schema map[string]any) map[string]any {
			return map[string]any{"parameters": []any{idempotencyKey}, "requestBody": body(schema), "responses": responses(map[string]any{
				"200": resp(ok, ref(rt)), "400": errResp("invalid entity or body"), "404": errResp("the entity or its reference not found"),
				"409": errResp("unique constraint violation"), "413": errResp("body too large"), "422": errResp("Idempotency-Key used for a different request")})}
		}
		paths[oaPath(r.path)] = pathItem(r.path, map[string]any{
			"get":   map[string]any{"summary": "The " + rt + " entity a " + r.child.Name + " entity references", "responses": responses(map[string]any{"200": resp("the entity", ref(rt)), "404": errResp("the entity or its reference not found")})},
			"put":   write("replaced, or created and referenced", withoutID(ref(rt+"_create"), schemas)),
			"patch": write("updated", ref(rt+"_update")),
			"delete": map[string]any{"summary": "Not allowed (as Kong): delete the referenced entity at its own URL", "responses": responses(map[string]any{
				"404": errResp("the entity or its reference not found"), "405": errResp("the reference is set")})},
		})
	}
	paths["/clustering/changes/{tx}"] = pathItem("/clustering/changes/:tx", map[string]any{"get": map[string]any{
		"summary": "The version a committed transaction became and the data planes that applied it",
		"parameters": []any{
			map[string]any{"name": "wait", "in": "query", "schema": map[string]any{"type": "string", "enum": []string{"live"}}},
			map[string]any{"name": "timeout", "in": "query", "schema": str},
		},
		"responses": responses(map[string]any{"200": resp("the change", obj), "400": errResp("bad tx, wait or timeout"),
			"404": errResp("transaction not committed"), "504": resp("wait=live timed out; the stragglers in behind", obj)})}})
	html := map[string]any{"text/html": map[string]any{"schema": str}}
	paths["/ui"] = map[string]any{"get": map[string]any{"responses": responses(map[string]any{"200": map[string]any{"description": "the cluster page", "content": html},
		"401": map[string]any{"description": "the sign-in form (ADMIN_TOKEN is set and neither the header nor the page's cookie carries it)", "content": html}})}}
	paths["/ui/login"] = map[string]any{"post": map[string]any{
		"summary": "The cluster page's sign-in: the admin token, kept in an HttpOnly cookie valid only for GET /ui and /ui/cluster",
		"requestBody": map[string]any{"content": map[string]any{"application/x-www-form-urlencoded": map[string]any{"schema": map[string]any{
			"type": "object", "properties": map[string]any{"token": str}}}}},
		"responses": responses(map[string]any{"303": map[string]any{"description": "signed in: to /ui"},
			"401": map[string]any{"description": "the token was refused: the sign-in form again", "content": html}})}}
	paths["/ui/cluster"] = map[string]any{"get": map[string]any{"responses": responses(map[string]any{"200": map[string]any{"description": "the cluster page's body", "content": html}})}}
	paths["/metrics"] = map[string]any{"get": map[string]any{"responses": responses(map[string]any{"200": map[string]any{"description": "Prometheus metrics",
		"content": map[string]any{"text/plain": map[string]any{"schema": str}}}})}}
}
