package main

import (
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		check   func(Config) bool
		wantErr []string
	}{
		{"defaults", nil, func(c Config) bool {
			return c.DataDir == "./.local/dataplane" && c.ProxyListen == "127.0.0.1:8000" && c.StatusListen == "127.0.0.1:8100" &&
				c.SyncMode == "incremental" && c.GroupPrefix == "deltaplane-dp-" && c.HeartbeatInterval == 5*time.Second &&
				len(c.Brokers) == 1 && c.Brokers[0] == "127.0.0.1:9092" && c.configTopic() == "dp.deltas" && c.statusTopic() == "dp.status"
		}, nil},
		{"prefix and full mode", map[string]string{"TOPIC_PREFIX": "x.", "SYNC_MODE": "full", "KAFKA_BROKERS": "a:1, b:2"}, func(c Config) bool {
			return c.configTopic() == "x.dp.full" && c.statusTopic() == "x.dp.status" && len(c.Brokers) == 2
		}, nil},
		{"every error at once", map[string]string{"SYNC_MODE": "push", "DP_HEARTBEAT_INTERVAL": "soon", "LOG_LEVEL": "loud", "DP_PROXY_LISTEN": "8000"}, nil,
			[]string{"SYNC_MODE", "DP_HEARTBEAT_INTERVAL", "LOG_LEVEL", "DP_PROXY_LISTEN"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadConfig(func(k string) string { return c.env[k] })
			if len(c.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range c.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %s", err, w)
					}
				}
				return
			}
			if err != nil || !c.check(cfg) {
				t.Fatalf("cfg = %+v, err = %v", cfg, err)
			}
		})
	}
}

// TestConfigRules: the rules of shared/config, the same in every service:
// values trimmed, blank means the default, durations positive, every error
// naming its variable.
func TestConfigRules(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		check   func(Config) bool
		wantErr []string
	}{
		{"values trimmed", map[string]string{"TOPIC_PREFIX": " x. ", "SYNC_MODE": " full ", "DP_HEARTBEAT_INTERVAL": " 300ms ", "DP_NODE_ID": " n1\n"}, func(c Config) bool {
			return c.TopicPrefix == "x." && c.configTopic() == "x.dp.full" && c.HeartbeatInterval == 300*time.Millisecond && c.NodeID == "n1"
		}, nil},
		{"blank means the default", map[string]string{"DP_DATA_DIR": " ", "DP_HEARTBEAT_INTERVAL": "", "KAFKA_BROKERS": "  ", "DP_GROUP_PREFIX": "\t"}, func(c Config) bool {
			return c.DataDir == "./.local/dataplane" && c.HeartbeatInterval == 5*time.Second && len(c.Brokers) == 1 && c.GroupPrefix == "deltaplane-dp-"
		}, nil},
		{"durations positive", map[string]string{"DP_HEARTBEAT_INTERVAL": "0s"}, nil, []string{"DP_HEARTBEAT_INTERVAL"}},
		{"negative duration", map[string]string{"DP_HEARTBEAT_INTERVAL": "-5s"}, nil, []string{"DP_HEARTBEAT_INTERVAL"}},
		{"every error names its variable", map[string]string{"SYNC_MODE": "push", "DP_HEARTBEAT_INTERVAL": "soon", "LOG_LEVEL": "loud", "DP_PROXY_LISTEN": "8000", "DP_STATUS_LISTEN": "x", "KAFKA_BROKERS": ","}, nil,
			[]string{"SYNC_MODE", "DP_HEARTBEAT_INTERVAL", "LOG_LEVEL", "DP_PROXY_LISTEN", "DP_STATUS_LISTEN", "KAFKA_BROKERS"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadConfig(func(k string) string { return c.env[k] })
			if c.wantErr == nil {
				if err != nil || !c.check(cfg) {
					t.Fatalf("cfg = %+v, err = %v", cfg, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %v", c.env)
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(c.wantErr) {
				t.Errorf("%d errors, want %d: %v", n, len(c.wantErr), err)
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w+":") {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}
