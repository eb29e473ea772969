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
		{"values trimmed", map[string]string{"SYNC_MODE": " full ", "SYNC_SESSION_TIMEOUT": " 3s ", "TOPIC_PREFIX": " p. ", "SYNC_GROUP": " g\n", "SYNC_MAX_RECORD_BYTES": " 2000 "}, func(c Config) bool {
			return c.Mode == "full" && c.SessionTimeout == 3*time.Second && c.TopicPrefix == "p." && c.Group == "g" && c.MaxRecordBytes == 2000
		}, nil},
		{"blank means the default", map[string]string{"SYNC_GROUP": "  ", "SYNC_IDLE_CHECK": " ", "KAFKA_BROKERS": "\t", "SYNC_INSTANCE_ID": " "}, func(c Config) bool {
			return c.Group == "deltaplane-sync-gateway" && c.IdleCheck == time.Second && len(c.Brokers) == 1 && c.InstanceID != ""
		}, nil},
		{"durations positive", map[string]string{"SYNC_FULL_COALESCE": "0s", "SYNC_START_TIMEOUT": "-1m", "SYNC_IDLE_CHECK": "1"}, nil,
			[]string{"SYNC_FULL_COALESCE", "SYNC_START_TIMEOUT", "SYNC_IDLE_CHECK"}},
		{"every error names its variable", map[string]string{"SYNC_MODE": "turbo", "SYNC_MAX_RECORD_BYTES": "2000000", "LOG_LEVEL": "loud", "SYNC_COMPACTION_LAG": "soon", "KAFKA_BROKERS": ","}, nil,
			[]string{"SYNC_MODE", "SYNC_MAX_RECORD_BYTES", "LOG_LEVEL", "SYNC_COMPACTION_LAG", "KAFKA_BROKERS"}},
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
