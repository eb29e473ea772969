package api

import (
	"errors"
	"net/http"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/app"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/shared/schema"
	"github.com/labstack/echo/v4"
)

// Kong's endpoints beside the entity collections: /tags, /schemas and the
// single-parent sub-resources (/routes/{route}/service).

// kongRoutes registers them on e.
func (a *API) kongRoutes(e *echo.Echo) {
	e.GET("/tags", a.tags)
	e.GET("/tags/:tag", a.tags)
	e.GET("/schemas/:entity", a.entitySchema)
	e.POST("/schemas/:entity/validate", a.validate)
	for _, r := range referencedEndpoints() {
		e.GET(r.path, a.getReferenced(r))
		e.PUT(r.path, a.putReferenced(r))
		e.PATCH(r.path, a.patchReferenced(r))
		e.DELETE(r.path, a.deleteReferenced(r))
	}
}

// referencedEndpoint is one single-parent sub-resource URL,
// /<child>/:id/<field>, for each foreign field of each type (as Kong
// generates them).
type referencedEndpoint struct {
	path  string
	child *entity.Type
	field string
}

// target is the referenced type.
func (r referencedEndpoint) target() *entity.Type {
	return app.Referenced{Child: r.child, Field: r.field}.Type()
}

func (r referencedEndpoint) of(c echo.Context) app.Referenced {
	return app.Referenced{Child: r.child, Field: r.field, Key: c.Param("id")}
}

func referencedEndpoints() []referencedEndpoint {
	var out []referencedEndpoint
	for _, st := range schema.Types() {
		t, _ := entity.Lookup(st.Name)
		for _, f := range t.Foreigns() {
			out = append(out, referencedEndpoint{path: "/" + st.Path + "/:id/" + f.Name, child: t, field: f.Name})
		}
	}
	return out
}

func (a *API) getReferenced(r referencedEndpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		e, err := a.app.GetReferenced(c.Request().Context(), r.of(c))
		if err != nil {
			return err
		}
		b, err := entity.Canonical(e)
		if err != nil {
			return err
		}
		return c.JSONBlob(http.StatusOK, b)
	}
}

func (a *API) putReferenced(r referencedEndpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw, in, err := a.readBody(c, r.target())
		if err != nil {
			return err
		}
		rp, err := a.app.PutReferenced(c.Request().Context(), key(c, raw), r.of(c), in)
		return reply(c, rp, err)
	}
}

func (a *API) patchReferenced(r referencedEndpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw, in, err := a.readBody(c, r.target())
		if err != nil {
			return err
		}
		rp, err := a.app.PatchReferenced(c.Request().Context(), key(c, raw), r.of(c), in)
		return reply(c, rp, err)
	}
}

func (a *API) deleteReferenced(r referencedEndpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := a.app.DeleteReferenced(c.Request().Context(), r.of(c))
		if errors.Is(err, app.ErrMethodNotAllowed) {
			return echo.NewHTTPError(http.StatusMethodNotAllowed)
		}
		return err
	}
}

// consumersByCustomID answers GET /consumers?custom_id=: a list of the
// consumer with that custom_id, or an empty one.
func (a *API) consumersByCustomID(c echo.Context, vals []string) error {
	if len(vals) != 1 || vals[0] == "" {
		return schemaError(entity.Errors{"custom_id": "expected one non-empty value"})
	}
	list, err := a.app.ConsumersByCustomID(c.Request().Context(), vals[0])
	if err != nil {
		return err
	}
	b, err := jsonMarshal(map[string]any{"data": list, "next": nil})
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, b)
}

// tags lists (tag, entity) pairs, Kong's shape: {"data": [{"entity_name",
// "entity_id", "tag"}], "next", "offset"}; /tags/{tag} only that tag's.
func (a *API) tags(c echo.Context) error {
	size, err := pageSize(c)
	if err != nil {
		return err
	}
	offset, err := pageOffset(c)
	if err != nil {
		return err
	}
	data, next, err := a.app.Tags(c.Request().Context(), c.Param("tag"), app.Page{Size: size, Offset: offset})
	if err != nil {
		return err
	}
	body := map[string]any{"data": data, "next": nil}
	if next != "" {
		q := c.Request().URL.Query()
		q.Set("offset", next)
		body["next"] = c.Request().URL.Path + "?" + q.Encode()
		body["offset"] = next
	}
	return c.JSON(http.StatusOK, body)
}

// schemaType is the entity type /schemas/{entity} names: its name
// (services, keyauth_credentials) as Kong, or its URL segment (key-auths).
func schemaType(c echo.Context) (*entity.Type, error) {
	name := c.Param("entity")
	if t, ok := entity.Lookup(name); ok {
		return t, nil
	}
	for _, st := range schema.Types() {
		if st.Path == name {
			t, _ := entity.Lookup(st.Name)
			return t, nil
		}
	}
	return nil, &Error{Status: http.StatusNotFound, Message: "No entity named '" + name + "'"}
}

func (a *API) entitySchema(c echo.Context) error {
	t, err := schemaType(c)
	if err != nil {
		return err
	}
	b, err := jsonMarshal(KongSchema(t))
	if err != nil {
		return err
	}
	return c.JSONBlob(http.StatusOK, b)
}

func (a *API) validate(c echo.Context) error {
	t, err := schemaType(c)
	if err != nil {
		return err
	}
	_, in, err := a.readBody(c, t)
	if err != nil {
		return err
	}
	if err := a.app.Validate(t, in); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"message": "schema validation successful"})
}

// KongSchema is t's descriptor in the shape of Kong's GET /schemas/{entity}:
// {"fields": [{"<name>": {"type": ..., "required": ..., "default": ...}}],
// "entity_checks": []}. Entity-level checks are code in deltaplane and are
// not listed.
func KongSchema(t *entity.Type) map[string]any {
	fields := make([]any, 0, len(t.Fields))
	unique := map[string]bool{}
	for _, c := range t.Columns {
		unique[c] = true
	}
	for _, f := range t.Fields {
		d := kongField(f)
		if unique[f.Name] {
			d["unique"] = true
		}
		fields = append(fields, map[string]any{f.Name: d})
	}
	return map[string]any{"fields": fields, "entity_checks": []any{}}
}

func kongField(f entity.Field) map[string]any {
	d := map[string]any{}
	switch f.Kind {
	case entity.String:
		d["type"] = "string"
	case entity.Integer:
		d["type"] = "integer"
	case entity.Number:
		d["type"] = "number"
	case entity.Boolean:
		d["type"] = "boolean"
	case entity.Array:
		d["type"] = "array"
	case entity.Set:
		d["type"] = "set"
	case entity.Record:
		d["type"] = "record"
		fs := make([]any, 0, len(f.Fields))
		for _, sf := range f.Fields {
			fs = append(fs, map[string]any{sf.Name: kongField(sf)})
		}
		d["fields"] = fs
	case entity.Map:
		d["type"] = "map"
		d["keys"] = map[string]any{"type": "string"}
		d["values"] = kongField(*f.Elem)
	case entity.Foreign:
		d["type"] = "foreign"
		if f.Ref != nil {
			d["reference"] = f.Ref.To
			if f.Ref.OnDelete == schema.Cascade {
				d["on_delete"] = "cascade"
			}
		}
	case entity.JSON:
		d["type"] = "json"
	}
	if (f.Kind == entity.Array || f.Kind == entity.Set) && f.Elem != nil {
		d["elements"] = kongField(*f.Elem)
	}
	switch f.Name {
	case "id":
		d["uuid"], d["auto"] = true, true
	case "created_at", "updated_at":
		d["timestamp"], d["auto"] = true, true
	}
	if f.Required {
		d["required"] = true
	}
	if f.Default != nil {
		d["default"] = f.Default
	}
	if len(f.Enum) > 0 {
		if f.Kind == entity.Integer {
			d["one_of"] = intEnum(f.Enum)
		} else {
			d["one_of"] = f.Enum
		}
	}
	if f.Min != nil && f.Max != nil {
		d["between"] = []int64{*f.Min, *f.Max}
	} else if f.Min != nil {
		d["gt"] = *f.Min - 1
	}
	return d
}
