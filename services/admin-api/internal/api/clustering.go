package api

import (
	"context"
	"net/http"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/cluster"
	"github.com/labstack/echo/v4"
)

// Cluster is what the clustering endpoints read.
type Cluster interface {
	DataPlanes(now time.Time, version string) []cluster.DataPlane
	Latest() cluster.Latest
	// Change tracking (changes.go) and the cluster page (ui.go).
	Change(tx uint64, now time.Time) cluster.Change
	WaitLive(ctx context.Context, tx uint64) cluster.Change
	Versions(n int) []cluster.Version
	Quarantined() []cluster.Quarantined
	Gateways() []cluster.Gateway
	LiveTTL() time.Duration
	Changed() <-chan struct{}
	ResyncReasons() map[string]string
}

var _ Cluster = (*cluster.Tracker)(nil)

func (a *API) dataPlanes(c echo.Context) error {
	list := []cluster.DataPlane{}
	if a.cluster != nil {
		list = a.cluster.DataPlanes(a.now(), Version)
	}
	return c.JSON(http.StatusOK, map[string]any{"data": list, "next": nil})
}

func (a *API) clusteringStatus(c echo.Context) error {
	out := map[string]any{}
	if a.cluster != nil {
		for _, dp := range a.cluster.DataPlanes(a.now(), Version) {
			out[dp.ID] = map[string]any{"config_hash": dp.ConfigHash, "hostname": dp.Hostname, "ip": dp.IP, "last_seen": dp.LastSeen}
		}
	}
	return c.JSON(http.StatusOK, out)
}
