package main

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
)

// PluginSchemasEnv names the directory of custom plugins' schemas (the
// files a custom data plane writes with "schemas -out DIR"); admin-api
// accepts those plugins besides the built-in ones.
const PluginSchemasEnv = "ADMIN_PLUGIN_SCHEMAS_DIR"

// loadPluginSchemas makes admin-api accept the custom plugins of the
// directory getenv names, if any; a bad schema file stops the start.
func loadPluginSchemas(getenv func(string) string, log *slog.Logger) error {
	dir := strings.TrimSpace(getenv(PluginSchemasEnv))
	if dir == "" {
		return nil
	}
	names, err := entity.LoadPluginSchemas(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", PluginSchemasEnv, err)
	}
	log.Info("custom plugins", "dir", dir, "plugins", names)
	return nil
}
