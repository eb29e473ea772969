package main

import (
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/testsupport"
)

func TestLoadConfig(t *testing.T) {
	testsupport.ConfigCases(t, loadConfig, []testsupport.ConfigCase[Config]{
		{Name: "defaults", Check: func(c Config) bool {
			return c.Listen == "127.0.0.1:8005" && c.Mode == "incremental" && c.Group == "deltaplane-sync-gateway" &&
				len(c.Brokers) == 1 && c.Brokers[0] == "127.0.0.1:9092" && c.TopicPrefix == "" &&
				c.MaxRecordBytes == 1000000 && c.SessionTimeout == 10*time.Second && c.IdleCheck == time.Second &&
				c.CompactionLag == 10*time.Minute
		}},
		{Name: "overrides", Env: map[string]string{"SYNC_MODE": "full", "KAFKA_BROKERS": "a:1, b:2", "TOPIC_PREFIX": "p.", "SYNC_SESSION_TIMEOUT": "3s", "SYNC_COMPACTION_LAG": "1h"}, Check: func(c Config) bool {
			return c.CompactionLag == time.Hour && c.Mode == "full" && len(c.Brokers) == 2 && c.Brokers[1] == "b:2" && c.TopicPrefix == "p." && c.SessionTimeout == 3*time.Second
		}},
		{Name: "errors joined", Env: map[string]string{"SYNC_MODE": "turbo", "SYNC_MAX_RECORD_BYTES": "-1", "LOG_LEVEL": "loud", "SYNC_SESSION_TIMEOUT": "soon"}, WantErr: []string{"SYNC_MODE", "SYNC_MAX_RECORD_BYTES", "LOG_LEVEL", "SYNC_SESSION_TIMEOUT"}},
	})
}

// TestConfigRules: the rules of shared/config, the same in every service:
// values trimmed, blank means the default, durations positive, every error
// naming its variable.
func TestConfigRules(t *testing.T) {
	testsupport.ConfigCases(t, loadConfig, []testsupport.ConfigCase[Config]{
		{Name: "values trimmed", Env: map[string]string{"SYNC_MODE": " full ", "SYNC_SESSION_TIMEOUT": " 3s ", "TOPIC_PREFIX": " p. ", "SYNC_GROUP": " g\n", "SYNC_MAX_RECORD_BYTES": " 2000 "}, Check: func(c Config) bool {
			return c.Mode == "full" && c.SessionTimeout == 3*time.Second && c.TopicPrefix == "p." && c.Group == "g" && c.MaxRecordBytes == 2000
		}},
		{Name: "blank means the default", Env: map[string]string{"SYNC_GROUP": "  ", "SYNC_IDLE_CHECK": " ", "KAFKA_BROKERS": "\t", "SYNC_INSTANCE_ID": " "}, Check: func(c Config) bool {
			return c.Group == "deltaplane-sync-gateway" && c.IdleCheck == time.Second && len(c.Brokers) == 1 && c.InstanceID != ""
		}},
		{Name: "durations positive", Env: map[string]string{"SYNC_FULL_COALESCE": "0s", "SYNC_START_TIMEOUT": "-1m", "SYNC_IDLE_CHECK": "1"}, WantErr: []string{"SYNC_FULL_COALESCE", "SYNC_START_TIMEOUT", "SYNC_IDLE_CHECK"}},
		{Name: "every error names its variable", Env: map[string]string{"SYNC_MODE": "turbo", "SYNC_MAX_RECORD_BYTES": "2000000", "LOG_LEVEL": "loud", "SYNC_COMPACTION_LAG": "soon", "KAFKA_BROKERS": ","}, WantErr: []string{"SYNC_MODE", "SYNC_MAX_RECORD_BYTES", "LOG_LEVEL", "SYNC_COMPACTION_LAG", "KAFKA_BROKERS"}},
	})
}
