package dataplane

import (
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/testsupport"
)

func TestLoadConfig(t *testing.T) {
	testsupport.ConfigCases(t, loadConfig, []testsupport.ConfigCase[Config]{
		{Name: "defaults", Check: func(c Config) bool {
			return c.DataDir == "./.local/dataplane" && c.ProxyListen == "127.0.0.1:8000" && c.StatusListen == "127.0.0.1:8100" &&
				c.SyncMode == "incremental" && c.GroupPrefix == "deltaplane-dp-" && c.HeartbeatInterval == 5*time.Second &&
				len(c.Brokers) == 1 && c.Brokers[0] == "127.0.0.1:9092" && c.configTopic() == "dp.deltas" && c.statusTopic() == "dp.status"
		}},
		{Name: "prefix and full mode", Env: map[string]string{"TOPIC_PREFIX": "x.", "SYNC_MODE": "full", "KAFKA_BROKERS": "a:1, b:2"}, Check: func(c Config) bool {
			return c.configTopic() == "x.dp.full" && c.statusTopic() == "x.dp.status" && len(c.Brokers) == 2
		}},
		{Name: "TLS listener", Env: map[string]string{"DP_PROXY_TLS_LISTEN": "8443", "DP_TLS_CERT": "c.pem"}, WantErr: []string{"DP_PROXY_TLS_LISTEN", "DP_TLS_CERT"}},
		// /status and /status/config (which names every key-auth key's
		// digest) never share a port with proxied traffic, whatever host.
		{Name: "status on the proxy port", Env: map[string]string{"DP_PROXY_LISTEN": "0.0.0.0:8000", "DP_STATUS_LISTEN": "127.0.0.1:8000"}, WantErr: []string{"DP_STATUS_LISTEN"}},
		{Name: "status on the TLS proxy port", Env: map[string]string{"DP_STATUS_LISTEN": "127.0.0.1:8443"}, WantErr: []string{"DP_STATUS_LISTEN"}},
		{Name: "replication", Env: map[string]string{"KAFKA_REPLICATION_FACTOR": "3"}, Check: func(c Config) bool { return c.Replication == 3 }},
		{Name: "TLS listener off", Env: map[string]string{"DP_PROXY_TLS_LISTEN": "off"}, Check: func(c Config) bool { return c.ProxyTLSListen == "off" }},
		{Name: "plugin cache tracking on unless switched off", Check: func(c Config) bool { return c.PluginCacheTracking }},
		{Name: "plugin cache tracking off", Env: map[string]string{"DP_PLUGIN_CACHE_TRACKING": "false"}, Check: func(c Config) bool { return !c.PluginCacheTracking }},
		{Name: "every error at once", Env: map[string]string{"SYNC_MODE": "push", "DP_HEARTBEAT_INTERVAL": "soon", "LOG_LEVEL": "loud", "DP_PROXY_LISTEN": "8000"}, WantErr: []string{"SYNC_MODE", "DP_HEARTBEAT_INTERVAL", "LOG_LEVEL", "DP_PROXY_LISTEN"}},
	})
}

// TestConfigRules: the rules of shared/config, the same in every service:
// values trimmed, blank means the default, durations positive, every error
// naming its variable.
func TestConfigRules(t *testing.T) {
	testsupport.ConfigCases(t, loadConfig, []testsupport.ConfigCase[Config]{
		{Name: "values trimmed", Env: map[string]string{"TOPIC_PREFIX": " x. ", "SYNC_MODE": " full ", "DP_HEARTBEAT_INTERVAL": " 300ms ", "DP_NODE_ID": " n1\n"}, Check: func(c Config) bool {
			return c.TopicPrefix == "x." && c.configTopic() == "x.dp.full" && c.HeartbeatInterval == 300*time.Millisecond && c.NodeID == "n1"
		}},
		{Name: "blank means the default", Env: map[string]string{"DP_DATA_DIR": " ", "DP_HEARTBEAT_INTERVAL": "", "KAFKA_BROKERS": "  ", "DP_GROUP_PREFIX": "\t"}, Check: func(c Config) bool {
			return c.DataDir == "./.local/dataplane" && c.HeartbeatInterval == 5*time.Second && len(c.Brokers) == 1 && c.GroupPrefix == "deltaplane-dp-"
		}},
		{Name: "durations positive", Env: map[string]string{"DP_HEARTBEAT_INTERVAL": "0s"}, WantErr: []string{"DP_HEARTBEAT_INTERVAL"}},
		{Name: "negative duration", Env: map[string]string{"DP_HEARTBEAT_INTERVAL": "-5s"}, WantErr: []string{"DP_HEARTBEAT_INTERVAL"}},
		{Name: "every error names its variable", Env: map[string]string{"SYNC_MODE": "push", "DP_HEARTBEAT_INTERVAL": "soon", "LOG_LEVEL": "loud", "DP_PROXY_LISTEN": "8000", "DP_STATUS_LISTEN": "x", "KAFKA_BROKERS": ","}, WantErr: []string{"SYNC_MODE", "DP_HEARTBEAT_INTERVAL", "LOG_LEVEL", "DP_PROXY_LISTEN", "DP_STATUS_LISTEN", "KAFKA_BROKERS"}},
	})
}
