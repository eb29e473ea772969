package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/deltaplane/deltaplane/shared/config"
)

// Config is admin-api's configuration: each field's variable and default are
// its env and envDefault tags, read by shared/config's rules (trimmed, blank
// means the default, durations positive, errors naming the variable).
type Config struct {
	Listen          string          `env:"ADMIN_LISTEN" envDefault:"127.0.0.1:8001"`
	DatabaseURL     string          `env:"DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:55432/deltaplane?sslmode=disable"`
	Brokers         []string        `env:"KAFKA_BROKERS" envDefault:"127.0.0.1:9092"`
	TopicPrefix     string          `env:"TOPIC_PREFIX"`
	Replication     int             `env:"KAFKA_REPLICATION_FACTOR" envDefault:"1"`       // cp.changes must have at least this many copies (broker.TopicSpec.Replicas)
	Token           string          `env:"ADMIN_TOKEN"`                                   // masked in logs
	MaxBodyBytes    int64           `env:"ADMIN_MAX_BODY_BYTES" envDefault:"1048576"`     // limit of request bodies
	MaxConfigBytes  int64           `env:"ADMIN_MAX_CONFIG_BYTES" envDefault:"134217728"` // limit of POST /config bodies
	OutboxRetention time.Duration   `env:"OUTBOX_RETENTION" envDefault:"1h"`
	IdemRetention   time.Duration   `env:"IDEMPOTENCY_RETENTION" envDefault:"24h"` // how long Idempotency-Key responses are kept
	LogLevel        slog.Level      `env:"LOG_LEVEL" envDefault:"info"`
	StartupTimeout  time.Duration   `env:"ADMIN_STARTUP_TIMEOUT" envDefault:"2m"`           // how long to wait for Postgres at start
	RelayTick       time.Duration   `env:"OUTBOX_POLL_INTERVAL" envDefault:"5s"`            // relay fallback poll when no NOTIFY arrives
	ClusterPoll     time.Duration   `env:"CLUSTER_POLL_INTERVAL" envDefault:"2s"`           // how often dp.deltas' existence, the quarantine topics and the sync group are read
	LiveTTL         time.Duration   `env:"CLUSTER_LIVE_TTL" envDefault:"15s"`               // a data plane is live while its last heartbeat is this recent
	SyncGroup       string          `env:"SYNC_GROUP" envDefault:"deltaplane-sync-gateway"` // the sync-gateways' consumer group, shown on /ui
	TLSCert         string          `env:"ADMIN_TLS_CERT"`                                  // PEM certificate (chain): serve HTTPS instead of HTTP
	TLSKey          string          `env:"ADMIN_TLS_KEY"`                                   // its private key
	KafkaTLS        config.KafkaTLS // KAFKA_TLS_*: mutual TLS to Kafka as principal admin-api
}

func loadConfig(getenv func(string) string) (Config, error) {
	var cfg Config
	errs := []error{config.Load(&cfg, getenv)}
	if len(cfg.Brokers) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS: no broker"))
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		errs = append(errs, errors.New("ADMIN_TLS_CERT and ADMIN_TLS_KEY: set both (HTTPS) or neither"))
	}
	errs = append(errs, cfg.KafkaTLS.Check())
	if _, err := url.Parse(cfg.DatabaseURL); err != nil {
		errs = append(errs, fmt.Errorf("DATABASE_URL: %w", err))
	}
	return cfg, errors.Join(errs...)
}

// LogValue logs the configuration once, secrets masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("listen", c.Listen),
		slog.String("database_url", config.MaskURL(c.DatabaseURL)),
		slog.Any("kafka_brokers", c.Brokers),
		slog.String("topic_prefix", c.TopicPrefix),
		slog.Int("kafka_replication_factor", c.Replication),
		slog.String("admin_token", config.Mask(c.Token)),
		slog.Int64("max_body_bytes", c.MaxBodyBytes),
		slog.Int64("max_config_bytes", c.MaxConfigBytes),
		slog.Duration("outbox_retention", c.OutboxRetention),
		slog.Duration("idempotency_retention", c.IdemRetention),
		slog.Duration("startup_timeout", c.StartupTimeout),
		slog.Duration("relay_poll_interval", c.RelayTick),
		slog.Duration("cluster_poll_interval", c.ClusterPoll),
		slog.Duration("cluster_live_ttl", c.LiveTTL),
		slog.String("sync_group", c.SyncGroup),
		slog.String("log_level", c.LogLevel.String()),
		slog.String("tls_cert", c.TLSCert),
		slog.Any("kafka_tls", c.KafkaTLS),
	)
}
