package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/testsupport"
)

func TestLoadConfig(t *testing.T) {
	cfg, err := loadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8001" || cfg.MaxBodyBytes != 1048576 || cfg.OutboxRetention != time.Hour ||
		len(cfg.Brokers) != 1 || cfg.Brokers[0] != "127.0.0.1:9092" || cfg.TopicPrefix != "" ||
		!strings.Contains(cfg.DatabaseURL, "/deltaplane?") {
		t.Errorf("defaults = %+v", cfg)
	}
	env := map[string]string{"OUTBOX_RETENTION": "soon", "ADMIN_MAX_BODY_BYTES": "-1", "LOG_LEVEL": "chatty"}
	_, err = loadConfig(func(k string) string { return env[k] })
	if err == nil {
		t.Fatal("bad values accepted")
	}
	for _, k := range []string{"OUTBOX_RETENTION", "ADMIN_MAX_BODY_BYTES", "LOG_LEVEL"} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error %q does not name %s", err, k)
		}
	}
}

// TestConfigRules: the rules of shared/config, the same in every service:
// values trimmed, blank means the default, durations positive, every error
// naming its variable, secrets masked when logged.
func TestConfigRules(t *testing.T) {
	testsupport.ConfigCases(t, loadConfig, []testsupport.ConfigCase[Config]{
		{Name: "values trimmed", Env: map[string]string{"ADMIN_LISTEN": " 0.0.0.0:8001 ", "TOPIC_PREFIX": " p. ", "ADMIN_TOKEN": " tok\n", "OUTBOX_RETENTION": " 2h ", "KAFKA_BROKERS": " a:1 , b:2 "}, Check: func(c Config) bool {
			return c.Listen == "0.0.0.0:8001" && c.TopicPrefix == "p." && c.Token == "tok" && c.OutboxRetention == 2*time.Hour && len(c.Brokers) == 2 && c.Brokers[1] == "b:2"
		}},
		{Name: "blank means the default", Env: map[string]string{"OUTBOX_RETENTION": "  ", "ADMIN_MAX_BODY_BYTES": " ", "KAFKA_BROKERS": "", "LOG_LEVEL": " "}, Check: func(c Config) bool {
			return c.OutboxRetention == time.Hour && c.MaxBodyBytes == 1048576 && len(c.Brokers) == 1 && c.LogLevel == slog.LevelInfo
		}},
		{Name: "durations positive", Env: map[string]string{"OUTBOX_POLL_INTERVAL": "0s", "CLUSTER_POLL_INTERVAL": "-1s", "IDEMPOTENCY_RETENTION": "10"}, WantErr: []string{"OUTBOX_POLL_INTERVAL", "CLUSTER_POLL_INTERVAL", "IDEMPOTENCY_RETENTION"}},
		{Name: "every error names its variable", Env: map[string]string{"ADMIN_STARTUP_TIMEOUT": "soon", "ADMIN_MAX_CONFIG_BYTES": "0", "ADMIN_MAX_BODY_BYTES": "1k", "LOG_LEVEL": "loud", "KAFKA_BROKERS": " , "}, WantErr: []string{"ADMIN_STARTUP_TIMEOUT", "ADMIN_MAX_CONFIG_BYTES", "ADMIN_MAX_BODY_BYTES", "LOG_LEVEL", "KAFKA_BROKERS"}},
	})
	t.Run("secrets masked", func(t *testing.T) {
		cfg, err := loadConfig(func(k string) string {
			return map[string]string{"ADMIN_TOKEN": "s3cret", "DATABASE_URL": "postgres://u:pw0rd@h:5432/db"}[k]
		})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		slog.New(slog.NewJSONHandler(&b, nil)).Info("starting", "config", cfg)
		if strings.Contains(b.String(), "s3cret") || strings.Contains(b.String(), "pw0rd") || !strings.Contains(b.String(), `"admin_token":"xxxxx"`) {
			t.Errorf("log %s", b.String())
		}
	})
}
