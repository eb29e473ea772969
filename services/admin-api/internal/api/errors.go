package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/app"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/declarative"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/labstack/echo/v4"
)

// Kong's error codes and names.
const (
	codeSchema      = 2
	codeForeignKey  = 4
	codeUnique      = 5
	codeNotFound    = 6
	codeOffset      = 7
	codeDatabase    = 8
	codeSize        = 9
	codeDeclarative = 14
)

var codeNames = map[int]string{
	codeSchema:      "schema violation",
	3:               "primary key violation",
	codeForeignKey:  "foreign key violation",
	codeUnique:      "unique constraint violation",
	codeNotFound:    "not found",
	codeOffset:      "invalid offset",
	codeDatabase:    "database error",
	codeSize:        "invalid size",
	codeDeclarative: "invalid declarative configuration",
}

// Error is an Admin API error in Kong's shape.
type Error struct {
	Status  int
	Message string
	Code    int            // 0: plain {"message": ...}
	Fields  map[string]any // nil: omitted
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Message) }

// Body is the JSON body of the error.
func (e *Error) Body() map[string]any {
	b := map[string]any{"message": e.Message}
	if e.Code != 0 {
		b["code"] = e.Code
		b["name"] = codeNames[e.Code]
	}
	if e.Fields != nil {
		b["fields"] = e.Fields
	}
	return b
}

func schemaError(errs entity.Errors) *Error {
	return &Error{Status: http.StatusBadRequest, Message: errs.Message(), Code: codeSchema, Fields: errs}
}

func badBody(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Message: msg, Code: codeSchema, Fields: map[string]any{"@body": msg}}
}

// toError maps any error to the Admin API error answered for it.
func toError(err error) (*Error, bool) {
	var ae *Error
	var se entity.Errors
	var ue *store.UniqueError
	var fe *store.ForeignKeyError
	var re *store.ReferencedError
	var he *echo.HTTPError
	var de *declarative.Error
	switch {
	case errors.As(err, &ae):
		return ae, false
	case errors.As(err, &de):
		return &Error{Status: http.StatusBadRequest, Message: de.Error(), Code: codeDeclarative, Fields: de.Fields}, false
	case errors.Is(err, app.ErrKeyReused):
		return &Error{Status: http.StatusUnprocessableEntity, Message: err.Error()}, false
	case errors.As(err, &se):
		return schemaError(se), false
	case errors.As(err, &ue):
		f := map[string]any{}
		for k, v := range ue.Fields {
			f[k] = v
		}
		return &Error{Status: http.StatusConflict, Message: ue.Error(), Code: codeUnique, Fields: f}, false
	case errors.As(err, &fe):
		return &Error{Status: http.StatusBadRequest, Message: fe.Error(), Code: codeForeignKey,
			Fields: map[string]any{fe.Field: map[string]any{fe.Key: fe.Value}}}, false
	case errors.As(err, &re):
		return &Error{Status: http.StatusBadRequest, Message: re.Error(), Code: codeForeignKey,
			Fields: map[string]any{"@referenced_by": re.Children}}, false
	case errors.Is(err, store.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Message: "Not found", Code: codeNotFound}, false
	case errors.Is(err, store.ErrOffset):
		return &Error{Status: http.StatusBadRequest, Message: "invalid offset", Code: codeOffset}, false
	case errors.Is(err, store.ErrOutcomeUnknown):
		return &Error{Status: http.StatusInternalServerError, Code: codeDatabase,
			Message: "database connection lost while committing; the outcome of this write is unknown (retrying with the same Idempotency-Key is safe)"}, true
	case errors.Is(err, store.ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Message: "database unavailable; nothing was written", Code: codeDatabase}, true
	case errors.As(err, &he):
		switch he.Code {
		case http.StatusNotFound:
			return &Error{Status: he.Code, Message: "Not found"}, false
		case http.StatusMethodNotAllowed:
			return &Error{Status: he.Code, Message: "Method not allowed"}, false
		case http.StatusRequestEntityTooLarge:
			return &Error{Status: he.Code, Message: "request body too large"}, false
		case http.StatusUnauthorized:
			return &Error{Status: he.Code, Message: "Invalid authentication credentials"}, false
		}
		return &Error{Status: he.Code, Message: fmt.Sprint(he.Message)}, he.Code >= 500
	}
	return &Error{Status: http.StatusInternalServerError, Message: "An unexpected error occurred"}, true
}

// errorHandler is the one place errors become HTTP responses.
func errorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		ae, serious := toError(err)
		if serious {
			log.Error("request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "status", ae.Status, "err", err)
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(ae.Status)
			return
		}
		_ = c.JSON(ae.Status, ae.Body())
	}
}
