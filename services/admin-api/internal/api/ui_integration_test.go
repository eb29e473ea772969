//go:build integration

package api_test

import (
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
)

// The cluster page renders without a cluster tracker, and shows a
// declarative import's progress (the browser test in e2e/ui_test.go drives
// it against the running system).
func TestClusterPageRenders(t *testing.T) {
	e := setup(t, false)
	if code, b := e.raw(t, "POST", "/config", declared, "application/yaml"); code != 201 {
		t.Fatalf("POST /config = %d %s", code, b)
	}
	code, page := testenv.Send(t, "GET", e.url+"/ui", "")
	if code != 200 || !strings.Contains(string(page), "<h1>deltaplane cluster</h1>") || !strings.Contains(string(page), `fetch("/ui/cluster"`) {
		t.Fatalf("GET /ui = %d %.300s", code, page)
	}
	code, frag := testenv.Send(t, "GET", e.url+"/ui/cluster", "")
	if code != 200 || !strings.Contains(string(frag), `id="outbox"`) || !strings.Contains(string(frag), "13 / 13") {
		t.Fatalf("GET /ui/cluster = %d %s", code, frag)
	}
}
