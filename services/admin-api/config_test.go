package main

import (
	"strings"
	"testing"
	"time"
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
