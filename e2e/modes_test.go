//go:build e2e

package e2e

import (
	"fmt"
	"testing"

	"github.com/deltaplane/deltaplane/shared/testsupport"
)

// The full-sync baseline end to end: the sync-gateway publishes the whole
// configuration per change and data planes replace theirs.
func TestFullModeEndToEnd(t *testing.T) {
	s := newSystem(t, "SYNC_MODE=full")
	dps := []*dataplane{s.startDataplane("dp1"), s.startDataplane("dp2")}
	up := upstream(t)
	mustDo(t, 201, "POST", s.Admin+"/services", map[string]any{"name": "echo", "url": up.URL})
	mustDo(t, 201, "POST", s.Admin+"/services/echo/routes", map[string]any{"name": "r1", "paths": []string{"/full"}})
	testsupport.Eventually(t, propagation, both(dps, func(dp *dataplane) func() error { return routesTo(dp, "/full/a", "/a") }))
	mustDo(t, 200, "PATCH", s.Admin+"/routes/r1", map[string]any{"paths": []string{"/moved"}})
	testsupport.Eventually(t, propagation, both(dps, func(dp *dataplane) func() error { return routesTo(dp, "/moved/b", "/b") }))
	testsupport.Eventually(t, propagation, both(dps, func(dp *dataplane) func() error { return notRouted(dp, "/full/a") }))
	for _, dp := range dps {
		if st := statusDoc(t, dp); st["mode"] != "full" {
			t.Fatalf("%s reports mode %v", dp.NodeID, st["mode"])
		}
	}
}

// Data planes report to the control plane: admin-api lists them in Kong's
// shape with the version they applied.
func TestClusteringDataPlanes(t *testing.T) {
	s := newSystem(t, "DP_HEARTBEAT_INTERVAL=500ms", "CLUSTER_POLL_INTERVAL=200ms")
	dps := []*dataplane{s.startDataplane("dp1"), s.startDataplane("dp2")}
	mustDo(t, 201, "POST", s.Admin+"/services", map[string]any{"name": "svc", "host": "example.com"})
	testsupport.Eventually(t, propagation, func() error {
		sg := mustDo(t, 200, "GET", s.Sync+"/status", nil)
		list := mustDo(t, 200, "GET", s.Admin+"/clustering/data-planes", nil)
		data, _ := list["data"].([]any)
		seen := map[string]bool{}
		for _, d := range data {
			dp, _ := d.(map[string]any)
			id, _ := dp["id"].(string)
			for _, k := range []string{"ip", "hostname", "version", "sync_status", "config_hash", "last_seen", "ttl"} {
				if _, ok := dp[k]; !ok {
					return fmt.Errorf("data plane %s lacks Kong's field %q: %v", id, k, dp)
				}
			}
			if num(dp, "applied_version") != num(sg, "version") || dp["config_hash"] != sg["hash"] || num(dp, "versions_behind") != 0 {
				return fmt.Errorf("data plane %s: %v; sync-gateway at %v %v", id, dp, sg["version"], sg["hash"])
			}
			seen[id] = true
		}
		for _, dp := range dps {
			if !seen[dp.NodeID] {
				return fmt.Errorf("%s not listed in %v", dp.NodeID, data)
			}
		}
		return nil
	})
}
