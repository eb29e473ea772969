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
