//go:build integration

package api_test

import (
	"errors"
	"testing"

	"github.com/kong/go-kong/kong"
)

// TestGoKongClient drives the Admin API with Kong's own Go client: what
// Kong's tooling sends, deltaplane must accept and answer in shapes the
// client decodes.
func TestGoKongClient(t *testing.T) {
	e := setup(t, false)
	ctx := t.Context()
	c, err := kong.NewClient(kong.String(e.url), nil)
	if err != nil {
		t.Fatal(err)
	}
	root, err := c.Root(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := kong.ParseSemanticVersion(kong.VersionFromInfo(root)); err != nil || v.Major() != 3 {
		t.Fatalf("version from GET / = %v, %v", kong.VersionFromInfo(root), err)
	}
	svc, err := c.Services.Create(ctx, &kong.Service{Name: kong.String("orders"), URL: kong.String("https://orders.internal:8443/v1")})
	if err != nil {
		t.Fatal(err)
	}
	if *svc.Host != "orders.internal" || *svc.Port != 8443 || *svc.Protocol != "https" || *svc.Path != "/v1" || *svc.Retries != 5 || *svc.ConnectTimeout != 60000 {
		t.Errorf("service = %+v", svc)
	}
	var apiErr *kong.APIError
	if _, err := c.Services.Create(ctx, &kong.Service{Name: kong.String("orders"), Host: kong.String("x")}); !errors.As(err, &apiErr) || apiErr.Code() != 409 {
		t.Errorf("duplicate service: err = %v, want a conflict", err)
	}
	route, err := c.Routes.CreateInService(ctx, svc.ID, &kong.Route{Name: kong.String("orders-r"), Paths: kong.StringSlice("/orders"), Methods: kong.StringSlice("GET", "POST")})
	if err != nil {
		t.Fatal(err)
	}
	if *route.Service.ID != *svc.ID || !*route.StripPath || *route.PreserveHost || len(route.Protocols) != 2 || *route.HTTPSRedirectStatusCode != 426 {
		t.Errorf("route = %+v", route)
	}
	svc.Retries = kong.Int(2)
	if up, err := c.Services.Update(ctx, svc); err != nil || *up.Retries != 2 {
		t.Errorf("update = %+v, %v", up, err)
	}
	cons, err := c.Consumers.Create(ctx, &kong.Consumer{Username: kong.String("alice")})
	if err != nil {
		t.Fatal(err)
	}
	key, err := c.KeyAuths.Create(ctx, cons.ID, &kong.KeyAuth{})
	if err != nil || key.Key == nil || *key.Consumer.ID != *cons.ID {
		t.Fatalf("key-auth = %+v, %v", key, err)
	}
	if keys, err := c.KeyAuths.ListAll(ctx); err != nil || len(keys) != 1 {
		t.Errorf("list key-auths = %d, %v", len(keys), err)
	}
	plugin, err := c.Plugins.Create(ctx, &kong.Plugin{Name: kong.String("rate-limiting"), Route: &kong.Route{ID: route.ID},
		Config: kong.Configuration{"minute": 5}})
	if err != nil {
		t.Fatal(err)
	}
	if plugin.Config["policy"] != "local" || plugin.Config["minute"] != float64(5) || !*plugin.Enabled {
		t.Errorf("plugin = %+v", plugin)
	}
	if ps, err := c.Plugins.ListAllForRoute(ctx, route.ID); err != nil || len(ps) != 1 {
		t.Errorf("route plugins = %d, %v", len(ps), err)
	}
	up, err := c.Upstreams.Create(ctx, &kong.Upstream{Name: kong.String("orders.upstream")})
	if err != nil || *up.Slots != 10000 || *up.Algorithm != "round-robin" {
		t.Fatalf("upstream = %+v, %v", up, err)
	}
	tg, err := c.Targets.Create(ctx, up.ID, &kong.Target{Target: kong.String("10.0.0.1")})
	if err != nil || *tg.Target != "10.0.0.1:8000" || *tg.Weight != 100 {
		t.Fatalf("target = %+v, %v", tg, err)
	}
	if all, err := c.Services.ListAll(ctx); err != nil || len(all) != 1 {
		t.Errorf("list services = %d, %v", len(all), err)
	}
	if err := c.Services.Delete(ctx, svc.ID); err == nil {
		t.Error("deleting a service with routes succeeded")
	}
	if err := c.Routes.Delete(ctx, route.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Services.Delete(ctx, svc.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Services.Get(ctx, svc.ID); !kong.IsNotFoundErr(err) {
		t.Errorf("get deleted: err = %v, want not found", err)
	}
	if n := e.count(t, "SELECT count(*) FROM plugins"); n != 0 {
		t.Errorf("the route's plugin survived its route: %d", n)
	}
}
