package api

import (
	"net/http"
	"strings"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/labstack/echo/v4"
)

// Query parameters as Kong reads them, and the NUL check of a request's
// URL and headers.

// pageOffset is a list's ?offset= ("" for the first page); empty or
// repeated is an invalid offset (400 code 7).
func pageOffset(c echo.Context) (string, error) {
	vals, ok := c.QueryParams()["offset"]
	if !ok {
		return "", nil
	}
	if len(vals) != 1 || vals[0] == "" {
		return "", &Error{Status: http.StatusBadRequest, Message: "invalid offset", Code: codeOffset}
	}
	return vals[0], nil
}

// rejectNUL answers 400 (code 2) to a request with a NUL character in its
// path, a query parameter's name or value, or a header: Postgres stores no
// NUL, and no Admin API input may carry one.
func rejectNUL(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if strings.IndexByte(r.URL.Path, 0) >= 0 {
			return schemaError(entity.Errors{"@path": entity.MsgNUL})
		}
		if strings.Contains(r.URL.RawQuery, "%00") || strings.IndexByte(r.URL.RawQuery, 0) >= 0 {
			for k, vs := range r.URL.Query() {
				for _, v := range append([]string{k}, vs...) {
					if strings.IndexByte(v, 0) >= 0 {
						return schemaError(entity.Errors{strings.ReplaceAll(k, "\x00", `\u0000`): entity.MsgNUL})
					}
				}
			}
		}
		for k, vs := range r.Header {
			for _, v := range vs {
				if strings.IndexByte(v, 0) >= 0 {
					return schemaError(entity.Errors{"@header " + k: entity.MsgNUL})
				}
			}
		}
		return next(c)
	}
}
