//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/testsupport"
)

// TestKongCompatEndToEnd: what issue 14 made Kong-compatible in admin-api
// reaches a data plane: a "1.1" declarative file's regex path without "~"
// (migrated to a "~" regex route) routes by regex; a certificate posted
// with its "snis" is served by SNI; a key-auth credential written with a
// ttl is accepted, then refused once the ttl is over.
func TestKongCompatEndToEnd(t *testing.T) {
	s := newSystem(t)
	dp := s.startDataplane("dp1")
	admin := s.Admin
	up := upstream(t)

	mustDo(t, 201, "POST", admin+"/config", fmt.Sprintf(`_format_version: "1.1"
services:
- name: orders
  url: %s
  routes:
  - name: by-user
    strip_path: false
    paths: ['/users/\d+/orders']
consumers:
- username: alice
`, up.URL))
	testsupport.Eventually(t, propagation, routesTo(dp, "/users/42/orders", "/users/42/orders"))
	if r := do(t, "GET", dp.Proxy+"/users/x/orders", nil); r.status != 404 {
		t.Errorf("/users/x/orders = %d %s, want 404 (the path is a regex)", r.status, r.body)
	}

	cert, key := selfSigned(t, "e2e-kong", "kong.e2e.test")
	mustDo(t, 201, "POST", admin+"/certificates", map[string]any{"cert": cert, "key": key, "snis": []string{"kong.e2e.test"}})
	testsupport.Eventually(t, propagation, func() error {
		name, err := servedName(dp.ProxyTLS, "kong.e2e.test")
		if err == nil && name != "e2e-kong" {
			err = fmt.Errorf("served %q", name)
		}
		return err
	})

	mustDo(t, 201, "POST", admin+"/services/orders/plugins", map[string]any{"name": "key-auth"})
	withKey := func(key string) int {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", dp.Proxy+"/users/42/orders", nil)
		if key != "" {
			req.Header.Set("apikey", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// The plugin is live before the credentials are written: otherwise a
	// 200 below could be the route's answer before key-auth applied, not
	// proof that the credentials did.
	testsupport.Eventually(t, propagation, func() error {
		if code := withKey(""); code != 401 {
			return fmt.Errorf("without a key: %d, want 401", code)
		}
		return nil
	})
	created := time.Now()
	const ttl = 8
	mustDo(t, 201, "POST", admin+"/consumers/alice/key-auth", map[string]any{"key": "short-lived", "ttl": ttl})
	mustDo(t, 201, "POST", admin+"/consumers/alice/key-auth", map[string]any{"key": "long-lived", "ttl": 3600})
	testsupport.Eventually(t, propagation, func() error {
		if code := withKey("long-lived"); code != 200 {
			return fmt.Errorf("long-lived key: %d", code)
		}
		return nil
	})
	// The short-lived key was applied before the long-lived one.
	if code := withKey("short-lived"); code != 200 && time.Since(created) < (ttl-1)*time.Second {
		t.Errorf("short-lived key within its ttl: %d, want 200", code)
	}
	testsupport.Eventually(t, propagation, func() error {
		if code := withKey("short-lived"); code != 401 {
			return fmt.Errorf("short-lived key %s after its write: %d, want 401", time.Since(created).Round(time.Second), code)
		}
		return nil
	})
	if code := withKey("long-lived"); code != 200 {
		t.Errorf("long-lived key after the short one expired: %d", code)
	}
}
