package api

import (
	"net/http"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/labstack/echo/v4"
)

// pluginsEnabled is Kong's GET /plugins/enabled: the plugins admin-api
// accepts (built-in and custom), sorted.
func (a *API) pluginsEnabled(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"enabled_plugins": entity.PluginNames()})
}

// pluginSchema is Kong's GET /schemas/plugins/{name}: the plugin entity's
// schema with the plugin's config record.
func (a *API) pluginSchema(c echo.Context) error {
	name := c.Param("name")
	s, ok := entity.PluginSchema(name)
	if !ok {
		return &Error{Status: http.StatusNotFound, Message: "No plugin named '" + name + "'"}
	}
	return c.JSON(http.StatusOK, s.Kong())
}
