// Package tenantheaders is an example deltaplane plugin written against the
// public SDK only: it tells the upstream who is calling, from data it
// derives from three entity types and caches without a line of
// invalidation code.
//
// For a request with the header X-User (config user_header) naming a
// consumer's username, the upstream gets:
//
//	X-Tenant-Id       the consumer's custom_id ("anonymous" when no consumer has that username)
//	X-Tenant-Tags     the consumer's tags, comma-separated
//	X-Tenant-Tier     the matched route's tag "tier=<value>" (a per-route setting; "standard" without one)
//	X-Tenant-Service  the name of the service the route leads to
//
// and the client gets X-Tenant-Id back on the response (response phase).
package tenantheaders

import (
	"net/http"
	"strings"

	"github.com/deltaplane/deltaplane/services/dataplane/sdk"
)

// Config is the plugin's configuration.
type Config struct {
	UserHeader string `json:"user_header"`
	Prefix     string `json:"prefix"`
}

// Schema is the plugin's config schema: admin-api validates with it (after
// "myplane schemas -out DIR" and ADMIN_PLUGIN_SCHEMAS_DIR=DIR), the data
// plane decodes with it.
var Schema = &sdk.Schema{
	Name:     "tenant-headers",
	Priority: 800, // after key-auth (1250) and rate-limiting (910)
	Fields: []sdk.Field{
		{Name: "user_header", Type: sdk.String, Default: "X-User"},
		{Name: "prefix", Type: sdk.String, Default: "X-Tenant-", LenMin: 3},
	},
}

// Plugin is the plugin, to pass to dataplane.Main.
func Plugin() sdk.Plugin {
	return sdk.Define(sdk.Definition[Config]{
		Schema: Schema,
		New: func(inst sdk.Instance, cfg Config) (sdk.Handler, error) {
			return &handler{id: inst.ID, cfg: cfg}, nil
		},
	})
}

type handler struct {
	id  string
	cfg Config
}

// tenant is the value derived from configuration, cached per plugin
// instance, route and user.
type tenant struct {
	id, tags, tier, service string
}

func (h *handler) Access(c *sdk.Context) bool {
	user := c.Header().Get(h.cfg.UserHeader)
	routeID := c.RouteID()
	v, err := c.Cached("tenant-headers|"+h.id+"|"+routeID+"|"+user, func(v *sdk.View) (any, error) {
		t := tenant{id: "anonymous", tier: "standard"}
		if cons, ok := v.ConsumerByUsername(user); ok && user != "" {
			t.id = cons.CustomID
			t.tags = strings.Join(cons.Tags, ",")
		}
		if route, ok := v.Route(routeID); ok {
			for _, tag := range route.Tags {
				if tier, ok := strings.CutPrefix(tag, "tier="); ok {
					t.tier = tier
				}
			}
			if svc, ok := v.Service(route.ServiceID); ok {
				t.service = svc.Name
			}
		}
		return t, nil
	})
	if err != nil {
		c.Respond(http.StatusInternalServerError, "An unexpected error occurred")
		return false
	}
	t := v.(tenant)
	hdr := c.Header()
	hdr.Set(h.cfg.Prefix+"Id", t.id)
	hdr.Set(h.cfg.Prefix+"Tags", t.tags)
	hdr.Set(h.cfg.Prefix+"Tier", t.tier)
	hdr.Set(h.cfg.Prefix+"Service", t.service)
	return true
}

// Response returns the tenant id to the client.
func (h *handler) Response(c *sdk.Context, _ int, header http.Header) {
	header.Set(h.cfg.Prefix+"Id", c.Header().Get(h.cfg.Prefix+"Id"))
}
