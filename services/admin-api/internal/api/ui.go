package api

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/app"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/cluster"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/outbox"
	"github.com/labstack/echo/v4"
)

// The cluster page, GET /ui: plain server-rendered HTML. The page's one
// script fetches GET /ui/cluster (the same HTML fragment the page was
// rendered with) every second and swaps it in. Polling rather than
// server-sent events: one short request a second per open page costs
// nothing here, needs no connection held per viewer, survives admin-api
// restarts without reconnection logic, and keeps the page a template with
// no front-end build.

//go:embed ui.html
var uiPage string

var uiTemplate = template.Must(template.New("ui").Funcs(template.FuncMap{
	"ago":  ago,
	"unix": func(s int64) time.Time { return time.Unix(s, 0) },
	"dur":  func(from, to time.Time) time.Duration { return to.Sub(from).Round(time.Millisecond) },
	"secs": func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("15:04:05.000")
	},
}).Parse(uiPage))

// uiView is what the cluster page shows.
type uiView struct {
	Now         time.Time
	Latest      uint64
	LiveTTL     time.Duration
	DataPlanes  []cluster.DataPlane
	Reasons     map[string]string // last resync reason per data plane
	Gateways    []cluster.Gateway
	Outbox      *outbox.Status
	OutboxErr   string
	Changes     []uiChange
	Quarantined []cluster.Quarantined
	Imports     []app.Progress
}

// uiChange is one row of the recent changes.
type uiChange struct {
	cluster.Version
	Applied, Live int
	State         string
}

func (a *API) uiView(ctx context.Context) uiView {
	now := a.now()
	v := uiView{Now: now}
	if ob, err := a.app.OutboxStatus(ctx); err == nil {
		v.Outbox = &ob
	} else {
		v.OutboxErr = err.Error()
	}
	v.Imports = a.app.Imports()
	if a.cluster == nil {
		return v
	}
	v.Latest = a.cluster.Latest().Version
	v.LiveTTL = a.cluster.LiveTTL()
	v.DataPlanes = a.cluster.DataPlanes(now, Version)
	v.Reasons = a.cluster.ResyncReasons()
	v.Gateways = a.cluster.Gateways()
	v.Quarantined = a.cluster.Quarantined()
	for _, ver := range a.cluster.Versions(15) {
		c := uiChange{Version: ver}
		for _, dp := range v.DataPlanes {
			if dp.Live {
				c.Live++
				if dp.AppliedVersion >= ver.Version {
					c.Applied++
				}
			}
		}
		c.State = cluster.StatePropagating
		if c.Live > 0 && c.Applied == c.Live {
			c.State = cluster.StateLive
		}
		v.Changes = append(v.Changes, c)
	}
	return v
}

func (a *API) uiRender(c echo.Context, name string) error {
	var buf bytes.Buffer
	if err := uiTemplate.ExecuteTemplate(&buf, name, a.uiView(c.Request().Context())); err != nil {
		return err
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.HTMLBlob(http.StatusOK, buf.Bytes())
}

// ui serves the cluster page.
func (a *API) ui(c echo.Context) error { return a.uiRender(c, "page") }

// uiCluster serves the page's live part, fetched by the page every second.
func (a *API) uiCluster(c echo.Context) error { return a.uiRender(c, "cluster") }

// ago is how long before now t was, for people ("3.2s ago").
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1fs ago", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds ago", int(d.Minutes()), int(d.Seconds())%60)
	default:
		return t.UTC().Format("2006-01-02 15:04:05")
	}
}
