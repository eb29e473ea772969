package api

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/labstack/echo/v4"
)

func TestErrorShapes(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		status int
		code   int
		msg    string
	}{
		{"schema", entity.Errors{"host": "required field missing"}, 400, 2, "schema violation (host: required field missing)"},
		{"unique", &store.UniqueError{Type: "services", Fields: map[string]string{"name": "a"}}, 409, 5, `UNIQUE violation detected on '{name="a"}'`},
		{"foreign key", &store.ForeignKeyError{Field: "service", Key: "id", Value: "x", Ref: "services"}, 400, 4, `the foreign key '{id="x"}' does not reference an existing 'services' entity.`},
		{"referenced", &store.ReferencedError{Type: "services", Children: "routes"}, 400, 4, "an existing 'routes' entity references this 'services' entity"},
		{"not found", fmt.Errorf("get: %w", store.ErrNotFound), 404, 6, "Not found"},
		{"offset", store.ErrOffset, 400, 7, "invalid offset"},
		{"unavailable", fmt.Errorf("%w: refused", store.ErrUnavailable), 503, 8, "database unavailable; nothing was written"},
		{"outcome unknown", fmt.Errorf("%w: unexpected EOF", store.ErrOutcomeUnknown), 500, 8, "database connection lost while committing; the outcome of this write is unknown (retrying with the same Idempotency-Key is safe)"},
		{"route not found", echo.ErrNotFound, 404, 0, "Not found"},
		{"too large", echo.NewHTTPError(http.StatusRequestEntityTooLarge), 413, 0, "request body too large"},
		{"unauthorized", echo.NewHTTPError(http.StatusUnauthorized), 401, 0, "Invalid authentication credentials"},
		{"unexpected", errors.New("boom"), 500, 0, "An unexpected error occurred"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ae, _ := toError(c.err)
			b := ae.Body()
			if ae.Status != c.status || b["message"] != c.msg {
				t.Fatalf("= %d %v, want %d %q", ae.Status, b, c.status, c.msg)
			}
			if c.code == 0 {
				if _, has := b["code"]; has {
					t.Errorf("plain error has a code: %v", b)
				}
				return
			}
			if b["code"] != c.code || b["name"] != codeNames[c.code] {
				t.Errorf("code/name = %v/%v, want %d/%s", b["code"], b["name"], c.code, codeNames[c.code])
			}
		})
	}
	ae, _ := toError(&store.ReferencedError{Type: "services", Children: "routes"})
	if ae.Fields["@referenced_by"] != "routes" {
		t.Errorf("fields = %v", ae.Fields)
	}
}

func TestParseObject(t *testing.T) {
	cases := map[string]bool{
		`{"a":1}`:          true,
		`{"a":1} {}`:       false,
		`[1]`:              false,
		`{"a":`:            false,
		"{\"a\":\"\xff\"}": false,
		`"str"`:            false,
	}
	for in, ok := range cases {
		_, err := parseObject([]byte(in))
		if (err == nil) != ok {
			t.Errorf("parseObject(%q) err = %v", in, err)
		}
	}
}
