package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// Compose cannot run on machines without a Docker engine, so this test loads
// docker-compose.yml with the compose-spec loader and checks what
// `docker compose up --scale dataplane=N` relies on.
func TestComposeFile(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	proj, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) { o.SetProjectName("deltaplane", true) })
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}

	want := []string{"admin-api", "dataplane", "kafka", "postgres", "redis", "sync-gateway"}
	if got := proj.ServiceNames(); !slices.Equal(sortedCopy(got), want) {
		t.Fatalf("services %v, want %v", got, want)
	}
	for name, svc := range proj.Services {
		t.Run(name, func(t *testing.T) {
			if svc.HealthCheck == nil || len(svc.HealthCheck.Test) == 0 {
				t.Error("no healthcheck")
			}
			for dep, cfg := range svc.DependsOn {
				if cfg.Condition != types.ServiceConditionHealthy {
					t.Errorf("depends_on %s with condition %q, want service_healthy", dep, cfg.Condition)
				}
				if dep2, ok := proj.Services[dep]; !ok || dep2.HealthCheck == nil {
					t.Errorf("depends_on %s, which has no healthcheck", dep)
				}
			}
		})
	}

	kafka := proj.Services["kafka"]
	if !strings.HasPrefix(kafka.Image, "apache/kafka:4.") {
		t.Errorf("kafka image %q, want the official apache/kafka 4.x", kafka.Image)
	}

	t.Run("dataplane scales without host-port clashes", func(t *testing.T) {
		for _, p := range proj.Services["dataplane"].Ports {
			if p.Published != "" {
				t.Errorf("dataplane publishes fixed host port %s:%d; --scale would clash", p.Published, p.Target)
			}
		}
		if v := proj.Services["dataplane"].Environment["DP_NODE_ID"]; v != nil {
			t.Errorf("DP_NODE_ID=%s is fixed: scaled replicas would share a node id and consumer group", *v)
		}
	})

	// Each service's environment: the variables its config.go reads must be
	// the ones compose sets (no typos), and the ones that have to differ in
	// a container (listen addresses, broker, database) must be set.
	mustSet := map[string][]string{
		"admin-api":    {"ADMIN_LISTEN", "DATABASE_URL", "KAFKA_BROKERS"},
		"sync-gateway": {"SYNC_LISTEN", "KAFKA_BROKERS"},
		"dataplane":    {"DP_PROXY_LISTEN", "DP_STATUS_LISTEN", "DP_DATA_DIR", "KAFKA_BROKERS"},
	}
	for svc, required := range mustSet {
		t.Run(svc+" environment", func(t *testing.T) {
			cfg := filepath.Join(root, "services", svc, "config.go")
			if _, err := os.Stat(cfg); err != nil { // a service as a library: services/<svc>/<svc>/config.go
				cfg = filepath.Join(root, "services", svc, svc, "config.go")
			}
			read := envRead(t, cfg)
			env := proj.Services[svc].Environment
			for k, v := range env {
				if !read[k] {
					t.Errorf("compose sets %s, which %s does not read", k, svc)
				}
				if v == nil {
					t.Errorf("%s has no value", k)
				}
			}
			for _, k := range required {
				if !read[k] {
					t.Errorf("%s no longer reads %s", svc, k)
				}
				if env[k] == nil {
					t.Errorf("%s must be set for a container", k)
				}
			}
		})
	}
}

// envTag is how a service's config.go declares a variable: shared/config
// reads a Config field tagged `env:"NAME"`. (A call like get("NAME", ...)
// counts too.)
var envTag = regexp.MustCompile(`(?:env:"|\w+\(")([A-Z][A-Z0-9_]+)"`)

// envRead lists the environment variables a service's config.go reads: the
// env tags of its Config fields.
func envRead(t *testing.T, path string) map[string]bool {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, m := range envTag.FindAllStringSubmatch(string(src), -1) {
		out[m[1]] = true
	}
	if len(out) == 0 {
		t.Fatalf("%s reads no environment variable (no field tagged env:\"NAME\")", path)
	}
	return out
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
