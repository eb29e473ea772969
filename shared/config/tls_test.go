package config

import (
	"strings"
	"testing"
	"time"
)

func TestKafkaTLSNested(t *testing.T) {
	var cfg struct {
		Name     string `env:"NAME"`
		KafkaTLS KafkaTLS
	}
	env := map[string]string{"KAFKA_TLS_CA": "ca.crt", "KAFKA_TLS_CERT": " svc.crt ", "KAFKA_TLS_KEY": "svc.key"}
	if err := Load(&cfg, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if cfg.KafkaTLS != (KafkaTLS{CA: "ca.crt", Cert: "svc.crt", Key: "svc.key", CheckEvery: 10 * time.Second}) || !cfg.KafkaTLS.Enabled() || cfg.KafkaTLS.Check() != nil {
		t.Fatalf("got %+v", cfg.KafkaTLS)
	}
	partial := KafkaTLS{CA: "ca.crt"}
	if err := partial.Check(); err == nil || !strings.Contains(err.Error(), "KAFKA_TLS_CERT") {
		t.Fatalf("partial: %v", err)
	}
	if (KafkaTLS{}).Enabled() || (KafkaTLS{}).Check() != nil {
		t.Fatal("empty must mean PLAINTEXT")
	}
}
