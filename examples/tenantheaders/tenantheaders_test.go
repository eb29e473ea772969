package tenantheaders_test

import (
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/examples/tenantheaders"
)

// TestSchema: the defaults the data plane decodes with and the checks
// admin-api applies, from the one schema the plugin exports.
func TestSchema(t *testing.T) {
	p := tenantheaders.Plugin()
	cfg, errs := p.Schema().Validate(map[string]any{})
	if errs != nil || cfg["user_header"] != "X-User" || cfg["prefix"] != "X-Tenant-" {
		t.Fatalf("defaults: %v %v", cfg, errs)
	}
	for in, want := range map[string]string{
		"X":   "config.prefix: length must be at least 3",
		"":    "config.prefix: length must be at least 3",
		"XY-": "",
	} {
		_, errs := p.Schema().Validate(map[string]any{"prefix": in})
		got := ""
		if errs != nil {
			got = errs.Error()
		}
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("prefix %q: %q, want %q", in, got, want)
		}
	}
}
