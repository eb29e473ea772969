// Package api is deltaplane's Kong-compatible Admin API over HTTP.
package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/google/uuid"
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
	store   *store.Store
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

// New builds the echo server.
// cl may be nil (no data planes are reported then).
func New(cfg Config, st *store.Store, cl Cluster, log *slog.Logger) *echo.Echo {
	a := &API{cfg: cfg, store: st, cluster: cl, log: log.With("component", "api"), now: time.Now}
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = errorHandler(a.log)
	e.Use(a.recoverer, a.auth)
	e.GET("/health", a.health)
	e.GET("/", a.root)
	e.GET("/status", a.status)
	e.GET("/openapi.json", a.openAPI)
	e.GET("/clustering/data-planes", a.dataPlanes)
	e.GET("/clustering/status", a.clusteringStatus)
	e.GET("/config", a.getConfig)
	e.POST("/config", a.postConfig)
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

func endpoints() []endpoint {
	var out []endpoint
	for _, t := range entity.Types {
		path := "/" + t.Name
		if t == entity.KeyAuth {
			path = "/key-auths"
		}
		out = append(out, endpoint{path: path, t: t})
	}
	nest := func(parent *entity.Type, path string, t *entity.Type, field string) {
		out = append(out, endpoint{path: "/" + parent.Name + "/:parent/" + path, t: t, parent: parent, field: field})
	}
	nest(entity.Service, "routes", entity.Route, "service")
	nest(entity.Service, "plugins", entity.Plugin, "service")
	nest(entity.Route, "plugins", entity.Plugin, "route")
	nest(entity.Consumer, "plugins", entity.Plugin, "consumer")
	nest(entity.Upstream, "targets", entity.Target, "upstream")
	nest(entity.Certificate, "snis", entity.SNI, "certificate")
	nest(entity.Consumer, "key-auth", entity.KeyAuth, "consumer")
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
		if a.cfg.Token == "" || c.Path() == "/health" {
			return next(c)
		}
		h := c.Request().Header
		got := h.Get("Kong-Admin-Token")
		if got == "" {
			if v, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer "); ok {
				got = v
			}
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(a.cfg.Token)) != 1 {
			return echo.NewHTTPError(http.StatusUnauthorized)
		}
		return next(c)
	}
}

func (a *API) health(c echo.Context) error {
	if err := a.store.Ping(c.Request().Context()); err != nil {
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
	reachable := a.store.Ping(ctx) == nil
	body := map[string]any{"database": map[string]any{"reachable": reachable}}
	if reachable {
		ob, err := a.store.Outbox(ctx)
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

func pageSize(c echo.Context) (int, error) {
	s := c.QueryParam("size")
	if s == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1000 {
		return 0, &Error{Status: http.StatusBadRequest, Message: "size must be an integer between 1 and 1000", Code: codeSize}
	}
	return n, nil
}

// parentID resolves the parent of a nested endpoint (404 when absent).
func (a *API) parentID(c echo.Context, ep endpoint) (string, error) {
	if ep.parent == nil {
		return "", nil
	}
	p, err := a.store.Get(c.Request().Context(), ep.parent, c.Param("parent"), store.Filter{})
	if err != nil {
		return "", err
	}
	return p["id"].(string), nil
}

func (a *API) list(ep endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		size, err := pageSize(c)
		if err != nil {
			return err
		}
		var f store.Filter
		if ep.parent != nil {
			pid, err := a.parentID(c, ep)
			if err != nil {
				return err
			}
			f.Field, f.ID = ep.field, pid
		}
		if tags := c.QueryParam("tags"); tags != "" {
			if strings.Contains(tags, "/") {
				f.Tags = strings.Split(tags, "/")
			} else {
				f.Tags, f.And = strings.Split(tags, ","), true
			}
			if strings.IndexByte(tags, 0) >= 0 {
				return schemaError(entity.Errors{"tags": entity.MsgNUL})
			}
		}
		data, next, err := a.store.List(c.Request().Context(), ep.t, f, size, c.QueryParam("offset"))
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

// scope is the filter of a nested URL's parent.
func scope(ep endpoint, pid string) store.Filter {
	if ep.parent == nil {
		return store.Filter{}
	}
	return store.Filter{Field: ep.field, ID: pid}
}

func (a *API) get(ep endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		pid, err := a.parentID(c, ep)
		if err != nil {
			return err
		}
		e, err := a.store.Get(c.Request().Context(), ep.t, c.Param("id"), scope(ep, pid))
		if err != nil {
			return err
		}
		b, err := store.Canonical(e)
		if err != nil {
			return err
		}
		return c.JSONBlob(http.StatusOK, b)
	}
}

// write runs one admin transaction for a request, honouring an
// Idempotency-Key: a retry with the same key and request gets the first
// response and writes nothing.
func (a *API) write(c echo.Context, t *entity.Type, fn func(ctx context.Context, tx *store.Tx, in map[string]any) (int, []byte, error)) error {
	raw, in, err := a.readBody(c, t)
	if err != nil {
		return err
	}
	return a.writeBody(c, raw, func(ctx context.Context, tx *store.Tx, _ []byte) (int, []byte, error) {
		return fn(ctx, tx, in)
	})
}

// writeRaw is write for a body that is not a JSON object (/config).
func (a *API) writeRaw(c echo.Context, max int64, fn func(ctx context.Context, tx *store.Tx, raw []byte) (int, []byte, error)) error {
	raw, err := readRaw(c, max)
	if err != nil {
		return err
	}
	return a.writeBody(c, raw, fn)
}

func (a *API) writeBody(c echo.Context, raw []byte, fn func(ctx context.Context, tx *store.Tx, raw []byte) (int, []byte, error)) error {
	var err error
	ctx := c.Request().Context()
	key := c.Request().Header.Get("Idempotency-Key")
	hash := store.HashRequest(c.Request().Method, c.Request().URL.RequestURI(), raw)
	replay := func(rec *store.Idempotency) error {
		if rec.RequestHash != hash {
			return &Error{Status: http.StatusUnprocessableEntity, Message: "Idempotency-Key was already used for a different request"}
		}
		c.Response().Header().Set("Idempotent-Replayed", "true")
		if len(rec.Response) == 0 {
			return c.NoContent(rec.Status)
		}
		return c.JSONBlob(rec.Status, rec.Response)
	}
	if key != "" {
		rec, err := a.store.FindIdempotency(ctx, key)
		if err != nil {
			return err
		}
		if rec != nil {
			return replay(rec)
		}
	}
	var status int
	var resp []byte
	var prior *store.Idempotency
	_, err = a.store.Write(ctx, func(tx *store.Tx) error {
		if key != "" {
			// Concurrent requests with this key wait here for the first.
			rec, err := tx.ClaimIdempotency(ctx, key)
			if err != nil {
				return err
			}
			if rec != nil {
				prior = rec
				return errReplay
			}
		}
		var err error
		status, resp, err = fn(ctx, tx, raw)
		if err != nil {
			return err
		}
		if key != "" {
			tx.Idempotent(store.Idempotency{Key: key, RequestHash: hash, Status: status, Response: append([]byte{}, resp...)})
		}
		return nil
	})
	if errors.Is(err, errReplay) {
		return replay(prior)
	}
	if err != nil {
		return err
	}
	if resp == nil {
		return c.NoContent(status)
	}
	return c.JSONBlob(status, resp)
}

// errReplay aborts a keyed write whose key a committed write already used.
var errReplay = errors.New("idempotent replay")

// resolveRefs turns foreign references given by endpoint key
// ({"name": "svc"}) into ids.
func resolveRefs(ctx context.Context, tx *store.Tx, t *entity.Type, in map[string]any) error {
	for _, f := range t.Foreigns() {
		ref, ok := in[f.Name].(map[string]any)
		if !ok || ref["id"] != nil {
			continue
		}
		rt, ok := entity.Lookup(f.Ref)
		if !ok || rt.Endpoint == "" {
			continue
		}
		name, ok := ref[rt.Endpoint].(string)
		if !ok {
			continue
		}
		e, err := tx.Get(ctx, rt, name, false)
		if errors.Is(err, store.ErrNotFound) {
			return &store.ForeignKeyError{Field: f.Name, Key: rt.Endpoint, Value: name, Ref: rt.Name}
		}
		if err != nil {
			return err
		}
		in[f.Name] = map[string]any{"id": e["id"]}
	}
	return nil
}

func (a *API) create(ep endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		return a.write(c, ep.t, func(ctx context.Context, tx *store.Tx, in map[string]any) (int, []byte, error) {
			pid, err := parentID(ctx, tx, ep, c)
			if err != nil {
				return 0, nil, err
			}
			if pid != "" {
				in[ep.field] = map[string]any{"id": pid}
			}
			if err := resolveRefs(ctx, tx, ep.t, in); err != nil {
				return 0, nil, err
			}
			now := a.now().Unix()
			e, errs := entity.Normalize(ep.t, in, nil, map[string]any{"created_at": now, "updated_at": now})
			if errs != nil {
				return 0, nil, errs
			}
			if e["id"] == nil {
				e["id"] = uuid.NewString()
			}
			b, err := tx.Insert(ctx, ep.t, e)
			return http.StatusCreated, b, err
		})
	}
}

func (a *API) put(ep endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		return a.write(c, ep.t, func(ctx context.Context, tx *store.Tx, in map[string]any) (int, []byte, error) {
			idOrName := c.Param("id")
			pid, err := parentID(ctx, tx, ep, c)
			if err != nil {
				return 0, nil, err
			}
			if pid != "" {
				in[ep.field] = map[string]any{"id": pid}
			}
			if err := resolveRefs(ctx, tx, ep.t, in); err != nil {
				return 0, nil, err
			}
			old, err := tx.GetScoped(ctx, ep.t, idOrName, true, scope(ep, pid))
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return 0, nil, err
			}
			now := a.now().Unix()
			keep := map[string]any{"created_at": now, "updated_at": now}
			if old != nil {
				keep["id"], keep["created_at"] = old["id"], old["created_at"]
			} else if store.IsUUID(idOrName) {
				keep["id"] = idOrName
			} else {
				keep["id"] = uuid.NewString()
			}
			if !store.IsUUID(idOrName) {
				if ep.t.Endpoint == "" {
					return 0, nil, store.ErrNotFound
				}
				in[ep.t.Endpoint] = idOrName
			}
			e, errs := entity.Normalize(ep.t, in, nil, keep)
			if errs != nil {
				return 0, nil, errs
			}
			if old != nil {
				b, err := tx.Update(ctx, ep.t, e)
				return http.StatusOK, b, err
			}
			b, err := tx.Insert(ctx, ep.t, e)
			return http.StatusOK, b, err
		})
	}
}

func (a *API) patch(ep endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		return a.write(c, ep.t, func(ctx context.Context, tx *store.Tx, in map[string]any) (int, []byte, error) {
			pid, err := parentID(ctx, tx, ep, c)
			if err != nil {
				return 0, nil, err
			}
			old, err := tx.GetScoped(ctx, ep.t, c.Param("id"), true, scope(ep, pid))
			if err != nil {
				return 0, nil, err
			}
			if err := resolveRefs(ctx, tx, ep.t, in); err != nil {
				return 0, nil, err
			}
			e, errs := entity.Normalize(ep.t, in, old, map[string]any{"updated_at": a.now().Unix()})
			if errs != nil {
				return 0, nil, errs
			}
			b, err := tx.Update(ctx, ep.t, e)
			return http.StatusOK, b, err
		})
	}
}

func (a *API) delete(ep endpoint) echo.HandlerFunc {
	return func(c echo.Context) error {
		return a.write(c, ep.t, func(ctx context.Context, tx *store.Tx, _ map[string]any) (int, []byte, error) {
			pid, err := parentID(ctx, tx, ep, c)
			if err != nil {
				return 0, nil, err
			}
			old, err := tx.GetScoped(ctx, ep.t, c.Param("id"), true, scope(ep, pid))
			if errors.Is(err, store.ErrNotFound) {
				return http.StatusNoContent, nil, nil // Kong answers 204 for a missing entity
			}
			if err != nil {
				return 0, nil, err
			}
			_, err = tx.Delete(ctx, ep.t, old["id"].(string))
			return http.StatusNoContent, nil, err
		})
	}
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
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

// parentID resolves the parent of a nested endpoint (/services/{parent}/routes)
// to its id; "" for a top-level endpoint.
func parentID(ctx context.Context, tx *store.Tx, ep endpoint, c echo.Context) (string, error) {
	if ep.parent == nil {
		return "", nil
	}
	p, err := tx.Get(ctx, ep.parent, c.Param("parent"), false)
	if err != nil {
		return "", err
	}
	return p["id"].(string), nil
}
