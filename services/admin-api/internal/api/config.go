package api

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/app"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/declarative"
	"github.com/labstack/echo/v4"
)

// postConfig replaces the whole configuration with a declarative one in
// one transaction, writing (and publishing) only the differences.
func (a *API) postConfig(c echo.Context) error {
	raw, err := readRaw(c, a.cfg.MaxConfigBytes)
	if err != nil {
		return err
	}
	if dry, err := dryRun(c); err != nil || dry {
		if err != nil {
			return err
		}
		p, err := a.app.PreviewConfig(c.Request().Context(), raw)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, p)
	}
	r, err := a.app.ReplaceConfig(c.Request().Context(), key(c, raw), raw)
	if err == nil && r.Tx > 0 {
		var res app.ConfigResult
		if json.Unmarshal(r.Body, &res) == nil {
			go a.followImport(r.Tx, res.Changes)
		}
	}
	return reply(c, r, err)
}

// dryRun reads ?dry_run= (true or false; 1 and 0 too).
func dryRun(c echo.Context) (bool, error) {
	s := c.QueryParam("dry_run")
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, &Error{Status: http.StatusBadRequest, Message: "dry_run must be true or false", Code: codeSchema}
	}
	return b, nil
}

// getConfig exports the configuration as Kong does: {"config": "<yaml>"}.
func (a *API) getConfig(c echo.Context) error {
	ents, err := a.app.ExportConfig(c.Request().Context())
	if err != nil {
		return err
	}
	y, err := declarative.Export(ents)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"config": string(y)})
}
