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
		wantErr []string
		check   func(Config) bool
	}{
		{"defaults", nil, nil, func(c Config) bool {
			return c.Listen == "127.0.0.1:8005" && c.Mode == "incremental" && c.Group == "deltaplane-sync-gateway" &&
				len(c.Brokers) == 1 && c.Brokers[0] == "127.0.0.1:9092" && c.TopicPrefix == "" &&
				c.MaxRecordBytes == 1000000 && c.SessionTimeout == 10*time.Second && c.IdleCheck == time.Second &&
				c.CompactionLag == 10*time.Minute
		}},
		{"overrides", map[string]string{"SYNC_MODE": "full", "KAFKA_BROKERS": "a:1, b:2", "TOPIC_PREFIX": "p.", "SYNC_SESSION_TIMEOUT": "3s", "SYNC_COMPACTION_LAG": "1h"}, nil, func(c Config) bool {
			return c.CompactionLag == time.Hour && c.Mode == "full" && len(c.Brokers) == 2 && c.Brokers[1] == "b:2" && c.TopicPrefix == "p." && c.SessionTimeout == 3*time.Second
		}},
		{"errors joined", map[string]string{"SYNC_MODE": "turbo", "SYNC_MAX_RECORD_BYTES": "-1", "LOG_LEVEL": "loud", "SYNC_SESSION_TIMEOUT": "soon"},
			[]string{"SYNC_MODE", "SYNC_MAX_RECORD_BYTES", "LOG_LEVEL", "SYNC_SESSION_TIMEOUT"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := loadConfig(func(k string) string { return c.env[k] })
			for _, w := range c.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("err = %v, want it to name %s", err, w)
				}
			}
			if c.wantErr == nil && err != nil {
				t.Fatal(err)
			}
			if c.check != nil && !c.check(cfg) {
				t.Fatalf("config %+v", cfg)
			}
		})
	}
}
