package e2e

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads docker-compose.yml with an environment and profiles.
func loadCompose(t *testing.T, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	proj, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml")}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName("deltaplane", true); o.Profiles = profiles })
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return proj
}

// TestComposeExposure: only the proxy is published on every interface;
// the Admin API (with a token) and the status listeners on 127.0.0.1.
func TestComposeExposure(t *testing.T) {
	proj := loadCompose(t, types.Mapping{})
	for svc, target := range map[string]uint32{"admin-api": 8001, "sync-gateway": 8005, "dataplane": 8100} {
		found := false
		for _, p := range proj.Services[svc].Ports {
			if p.Target == target {
				found = true
				if p.HostIP != "127.0.0.1" {
					t.Errorf("%s publishes %d on %q, want 127.0.0.1", svc, target, p.HostIP)
				}
			}
		}
		if !found {
			t.Errorf("%s does not publish %d", svc, target)
		}
	}
	if tok := proj.Services["admin-api"].Environment["ADMIN_TOKEN"]; tok == nil || *tok == "" {
		t.Error("admin-api has no ADMIN_TOKEN")
	}
	dp := proj.Services["dataplane"].Environment
	if *dp["DP_STATUS_LISTEN"] == *dp["DP_PROXY_LISTEN"] {
		t.Errorf("the data plane's status listener is on the proxy's address %s", *dp["DP_STATUS_LISTEN"])
	}
	// The default stays one broker.
	if v := *proj.Services["kafka"].Environment["KAFKA_CONTROLLER_QUORUM_VOTERS"]; v != "1@kafka:9093" {
		t.Errorf("default voters %q", v)
	}
	if b := *proj.Services["admin-api"].Environment["KAFKA_BROKERS"]; b != "kafka:9092" {
		t.Errorf("default KAFKA_BROKERS %q", b)
	}
}

// TestComposeClusterProfile loads the file as the README's command does
// (deployments/compose-cluster.env, profile cluster): three brokers with
// the same voters, internal topics of three copies, and every service
// pointed at all three and requiring three copies.
func TestComposeClusterProfile(t *testing.T) {
	root, _ := filepath.Abs("..")
	env, err := dotenv.GetEnvFromFile(map[string]string{}, []string{filepath.Join(root, "deployments", "compose-cluster.env")})
	if err != nil {
		t.Fatal(err)
	}
	proj := loadCompose(t, env, strings.Split(env["COMPOSE_PROFILES"], ",")...)
	var brokers []string
	for _, name := range []string{"kafka", "kafka-2", "kafka-3"} {
		svc, ok := proj.Services[name]
		if !ok {
			t.Fatalf("no service %s in profile cluster (services %v)", name, proj.ServiceNames())
		}
		e := svc.Environment
		if v := *e["KAFKA_CONTROLLER_QUORUM_VOTERS"]; v != "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093" {
			t.Errorf("%s voters %q", name, v)
		}
		if *e["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] != "3" || *e["KAFKA_MIN_INSYNC_REPLICAS"] != "2" {
			t.Errorf("%s: offsets topic RF %s, min.insync %s", name, *e["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"], *e["KAFKA_MIN_INSYNC_REPLICAS"])
		}
		brokers = append(brokers, strings.TrimPrefix(*e["KAFKA_ADVERTISED_LISTENERS"], "PLAINTEXT://"))
	}
	for _, svc := range []string{"admin-api", "sync-gateway", "dataplane"} {
		e := proj.Services[svc].Environment
		if got := strings.Split(*e["KAFKA_BROKERS"], ","); !slices.Equal(got, brokers) {
			t.Errorf("%s: KAFKA_BROKERS %v, want %v", svc, got, brokers)
		}
		if *e["KAFKA_REPLICATION_FACTOR"] != "3" {
			t.Errorf("%s: KAFKA_REPLICATION_FACTOR %s", svc, *e["KAFKA_REPLICATION_FACTOR"])
		}
	}
}
