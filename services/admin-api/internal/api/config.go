package api

import (
	"net/http"

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
	r, err := a.app.ReplaceConfig(c.Request().Context(), key(c, raw), raw)
	return reply(c, r, err)
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
