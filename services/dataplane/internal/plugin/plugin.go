// Package plugin is the data plane's side of the plugin SDK (package sdk):
// the hooks the consumer and the proxy call. Package sdk implements them
// and sets New when it is linked in, so that the SDK's public surface holds
// no internal types.
package plugin

import (
	"log/slog"
	"net/http"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/proxy"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/shared/pluginschema"
)

// Framework runs a data plane's plugins.
type Framework interface {
	// Prepare runs before a batch is published (cached values of changed
	// entities dropped, changed plugin entities' handlers rebuilt).
	Prepare(s *snapshot.Snapshot, events []snapshot.Event, reset bool)
	// Notify runs after a batch is published (plugins' Events).
	Notify(s *snapshot.Snapshot, events []snapshot.Event, reset bool)
	// Access is the proxy's access phase.
	Access(w http.ResponseWriter, r *http.Request, rc *proxy.RequestContext) bool
	// Wrap adds the response phase to the proxy's handler.
	Wrap(next http.Handler) http.Handler
	// Schemas are the plugins' config schemas.
	Schemas() []*pluginschema.Schema
	// CachedValues is the number of values in the plugins' cache.
	CachedValues() int
}

// Options tune the framework.
type Options struct {
	// Tracking drops cached values when what they derive from changes.
	// Off only in tests that show they catch stale values.
	Tracking bool
}

// New builds the framework of plugins (each an sdk.Plugin); set by
// package sdk.
var New func(log *slog.Logger, opts Options, plugins ...any) (Framework, error)
