// Package api is deltaplane's Kong-compatible Admin API over HTTP: its
// handlers parse a request, call the application (package app) and render
// the answer; errors become responses in one place (errorHandler).
package api

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/app"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/deltaplane/deltaplane/shared/schema"
	"github.com/labstack/echo/v4"
)

// Version is the Kong version deltaplane's Admin API is compatible with.
const Version = "3.9.0"

// Config of the API.
type Config struct {
	Token        string // ADMIN_TOKEN; empty: no authentication
	MaxBodyBytes int64
	// MaxConfigBytes limits POST /config bodies (a whole configuration).
	MaxConfigBytes int64
	ListenAddr     string
	NodeID         string
}

// API serves the Admin API.
type API struct {
	cfg     Config
	cluster Cluster
	app     *app.App
	log     *slog.Logger
	now     func() time.Time
}

// endpoint is one collection URL.
type endpoint struct {
	path   string       // "/services" or "/services/:parent/routes"
	t      *entity.Type // entity type served
	parent *entity.Type // non-nil for nested endpoints
	field  string       // the foreign field scoping a nested endpoint
}

// New builds the echo server over the application ap.
// cl may be nil (no data planes are reported then).
func New(cfg Config, ap *app.App, cl Cluster, log *slog.Logger) *echo.Echo {
	a := &API{cfg: cfg, app: ap, cluster: cl, log: log.With("component", "api"), now: time.Now}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(a.log)
	e.Use(a.recoverer, a.auth, rejectNUL)
	e.GET("/health", a.health)
	e.GET("/", a.root)
	e.GET("/status", a.status)
	e.GET("/openapi.json", a.openAPI)
	e.GET("/clustering/data-planes", a.dataPlanes)
	e.GET("/clustering/status", a.clusteringStatus)
	e.GET("/clustering/changes/:tx", a.change)
	e.GET("/ui", a.ui)
	e.GET("/ui/cluster", a.uiCluster)
	e.POST("/ui/login", a.uiLogin)
	e.GET("/metrics", a.metricsHandler())
	e.GET("/config", a.getConfig)
	e.GET("/plugins/enabled", a.pluginsEnabled)
	e.GET("/schemas/plugins/:name", a.pluginSchema)
	e.POST("/config", a.postConfig)
	a.kongRoutes(e)
	for _, ep := range endpoints() {
		e.GET(ep.path, a.list(ep))
		e.POST(ep.path, a.create(ep))
		e.GET(ep.path+"/:id", a.get(ep))
		e.PUT(ep.path+"/:id", a.put(ep))
		e.PATCH(ep.path+"/:id", a.patch(ep))
		e.DELETE(ep.path+"/:id", a.delete(ep))
	}
	return e
}

// endpoints are the collection URLs: one per entity type at its path in
// the entity graph, and one per nested endpoint there
// (/services/:parent/routes), scoped by the child's reference field.
func endpoints() []endpoint {
	var out []endpoint
	for _, st := range schema.Types() {
		t, _ := entity.Lookup(st.Name)
		out = append(out, endpoint{path: "/" + st.Path, t: t})
	}
	for _, r := range schema.Nested() {
		t, _ := entity.Lookup(r.From)
		parent, _ := entity.Lookup(r.To)
		pt, _ := schema.Lookup(r.To)
		out = append(out, endpoint{path: "/" + pt.Path + "/:parent/" + r.Endpoint, t: t, parent: parent, field: r.Field})
	}
	return out
}

func (a *API) recoverer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				a.log.Error("panic in handler", "panic", r, "path", c.Request().URL.Path)
				err = &Error{Status: http.StatusInternalServerError, Message: "An unexpected error occurred"}
			}
		}()
		return next(c)
	}
}

func (a *API) auth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if a.cfg.Token == "" || c.Path() == "/health" || c.Path() == "/ui/login" {
			return next(c)
		}
		h := c.Request().Header
		got := h.Get("Kong-Admin-Token")
		if got == "" {
			if v, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer "); ok {
				got = v
			}
		}
		if got == "" && uiCookieAllowed(c) {
			got = uiCookieToken(c)
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(a.cfg.Token)) != 1 {
			if c.Path() == "/ui" && c.Request().Method == http.MethodGet {
				return a.uiLoginForm(c, false)
			}
			return echo.NewHTTPError(http.StatusUnauthorized)
		}
		return next(c)
	}
}

func (a *API) health(c echo.Context) error {
	if err := a.app.Ping(c.Request().Context()); err != nil {
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "database": map[string]any{"reachable": false}})
	}
	return c.JSON(http.StatusOK, map[string]any{"status": "ok", "database": map[string]any{"reachable": true}})
}

func (a *API) root(c echo.Context) error {
	host, _ := os.Hostname()
	return c.JSON(http.StatusOK, map[string]any{
		"version":  Version,
		"edition":  "community",
		"tagline":  "Welcome to deltaplane",
		"hostname": host,
		"node_id":  a.cfg.NodeID,
		"configuration": map[string]any{
			"database":         "postgres",
			"role":             "control_plane",
			"admin_listen":     []string{a.cfg.ListenAddr},
			"cluster_rpc_sync": true,
		},
		"plugins": map[string]any{"available_on_server": map[string]any{"key-auth": map[string]any{"version": Version}, "rate-limiting": map[string]any{"version": Version}}},
	})
}

func (a *API) status(c echo.Context) error {
	ctx := c.Request().Context()
	reachable := a.app.Ping(ctx) == nil
	body := map[string]any{"database": map[string]any{"reachable": reachable}}
	if reachable {
		ob, err := a.app.OutboxStatus(ctx)
		if err == nil {
			body["outbox"] = ob
		}
	}
	return c.JSON(http.StatusOK, body)
}

// readRaw reads a body of at most max bytes.
func readRaw(c echo.Context, max int64) ([]byte, error) {
	r := c.Request()
	if r.ContentLength > max {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge)
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, badBody("Cannot read request body")
	}
	if int64(len(raw)) > max {
		return nil, echo.NewHTTPError(http.StatusRequestEntityTooLarge)
	}
	return raw, nil
}

// readBody reads a JSON object body within the size limit. An empty body
// is an empty object.
func (a *API) readBody(c echo.Context, t *entity.Type) ([]byte, map[string]any, error) {
	raw, err := readRaw(c, a.cfg.MaxBodyBytes)
	if err != nil {
		return nil, nil, err
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return raw, map[string]any{}, nil
	}
	if strings.HasPrefix(c.Request().Header.Get("Content-Type"), "application/x-www-form-urlencoded") && trimmed[0] != '{' {
		if !utf8.Valid(raw) {
			return nil, nil, badBody("Cannot parse form body: invalid UTF-8")
		}
		m, err := parseForm(raw, t)
		return raw, m, err
	}
	m, err := parseObject(raw)
	if err != nil {
		return nil, nil, err
	}
	return raw, m, nil
}

func parseObject(raw []byte) (map[string]any, error) {
	if !utf8.Valid(raw) {
		return nil, badBody("Cannot parse JSON body: invalid UTF-8")
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, badBody("Cannot parse JSON body")
	}
	if d.More() {
		return nil, badBody("Cannot parse JSON body: trailing data")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, badBody("Cannot parse JSON body: expected an object")
	}
	return m, nil
}

func sizeError(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Message: msg, Code: codeSize}
}

// pageSize is a list's ?size= (default 100): one integer between 1 and
// 1000. Empty ("?size=", "?size") or repeated is "size must be a number"
// (Kong reads a repeated parameter as a table, which is not a number).
func pageSize(c echo.Context) (int, error) {
	vals, ok := c.QueryParams()["size"]
	if !ok {
		return 100, nil
	}
	if len(vals) != 1 || vals[0] == "" {
		return 0, sizeError("size must be a number")
	}
	n, err := strconv.Atoi(vals[0])
	if err != nil {
		if _, ferr := strconv.ParseFloat(vals[0], 64); ferr != nil {
			return 0, sizeError("size must be a number")
		}
	}
	if err != nil || n < 1 || n > 1000 {
		return 0, sizeError("size must be an integer between 1 and 1000")
	}
	return n, nil
}

// scope is the parent of a nested endpoint's URL.
func scope(c echo.Context, ep endpoint) app.Scope {
	if ep.parent == nil {
		return app.Scope{}
	}
	return app.Scope{Parent: ep.parent, Field: ep.field, Key: c.Param("parent")}
}

func (a *API) list(ep endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		if cid, ok := c.QueryParams()["custom_id"]; ok && ep.t == entity.Consumer && ep.parent == nil {
			return a.consumersByCustomID(c, cid)
		}
		size, err := pageSize(c)
		if err != nil {
			return err
		}
		offset, err := pageOffset(c)
		if err != nil {
			return err
		}
		p := app.Page{Size: size, Offset: offset}
		if tags := c.QueryParam("tags"); tags != "" {
			if strings.Contains(tags, "/") {
				p.Tags = strings.Split(tags, "/")
			} else {
				p.Tags, p.AllOf = strings.Split(tags, ","), true
			}
		}
		data, next, err := a.app.List(c.Request().Context(), ep.t, scope(c, ep), p)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		buf.WriteString(`{"data":[`)
		for i, d := range data {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(d)
		}
		buf.WriteString(`],"next":`)
		if next == "" {
			buf.WriteString("null}")
		} else {
			q := c.Request().URL.Query()
			q.Set("offset", next)
			nb, _ := jsonMarshal(c.Request().URL.Path + "?" + q.Encode())
			ob, _ := jsonMarshal(next)
			buf.Write(nb)
			buf.WriteString(`,"offset":`)
			buf.Write(ob)
			buf.WriteString("}")
		}
		return c.JSONBlob(http.StatusOK, buf.Bytes())
	}
}

func (a *API) get(ep endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		e, err := a.app.Get(c.Request().Context(), ep.t, scope(c, ep), c.Param("id"))
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

// key is the request's Idempotency-Key with the request's fingerprint.
func key(c echo.Context, raw []byte) app.Key {
	r := c.Request()
	k := r.Header.Get("Idempotency-Key")
	if k == "" {
		return app.Key{}
	}
	return app.Key{Key: k, RequestHash: store.HashRequest(r.Method, r.URL.RequestURI(), raw)}
}

// reply renders a write's answer.
func reply(c echo.Context, r app.Reply, err error) error {
	if err != nil {
		return err
	}
	if r.Replayed {
		c.Response().Header().Set("Idempotent-Replayed", "true")
	} else {
		c.Response().Header().Set(HeaderTx, strconv.FormatUint(r.Tx, 10))
	}
	if len(r.Body) == 0 {
		return c.NoContent(r.Status)
	}
	return c.JSONBlob(r.Status, r.Body)
}

func (a *API) create(ep endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw, in, err := a.readBody(c, ep.t)
		if err != nil {
			return err
		}
		r, err := a.app.Create(c.Request().Context(), key(c, raw), ep.t, scope(c, ep), in)
		return reply(c, r, err)
	}
}

func (a *API) put(ep endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw, in, err := a.readBody(c, ep.t)
		if err != nil {
			return err
		}
		r, err := a.app.Put(c.Request().Context(), key(c, raw), ep.t, scope(c, ep), c.Param("id"), in)
		return reply(c, r, err)
	}
}

func (a *API) patch(ep endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw, in, err := a.readBody(c, ep.t)
		if err != nil {
			return err
		}
		r, err := a.app.Patch(c.Request().Context(), key(c, raw), ep.t, scope(c, ep), c.Param("id"), in)
		return reply(c, r, err)
	}
}

func (a *API) delete(ep endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		raw, _, err := a.readBody(c, ep.t)
		if err != nil {
			return err
		}
		r, err := a.app.Delete(c.Request().Context(), key(c, raw), ep.t, scope(c, ep), c.Param("id"))
		return reply(c, r, err)
	}
}

func jsonMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
