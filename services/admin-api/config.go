package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/shared/broker"
)

// Config is admin-api's configuration, read from the environment.
type Config struct {
	Listen          string        // ADMIN_LISTEN
	DatabaseURL     string        // DATABASE_URL
	Brokers         []string      // KAFKA_BROKERS
	TopicPrefix     string        // TOPIC_PREFIX
	Token           string        // ADMIN_TOKEN (masked in logs)
	MaxBodyBytes    int64         // ADMIN_MAX_BODY_BYTES
	MaxConfigBytes  int64         // ADMIN_MAX_CONFIG_BYTES: limit of POST /config bodies
	OutboxRetention time.Duration // OUTBOX_RETENTION
	IdemRetention   time.Duration // IDEMPOTENCY_RETENTION: how long Idempotency-Key responses are kept
	LogLevel        slog.Level    // LOG_LEVEL
	StartupTimeout  time.Duration // ADMIN_STARTUP_TIMEOUT: how long to wait for Postgres at start
	RelayTick       time.Duration // OUTBOX_POLL_INTERVAL: relay fallback poll when no NOTIFY arrives
	ClusterPoll     time.Duration // CLUSTER_POLL_INTERVAL: how often the latest dp.deltas version is read
}

func loadConfig(getenv func(string) string) (Config, error) {
	get := func(k, def string) string {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
		return def
	}
	var errs []error
	dur := func(k, def string) time.Duration {
		d, err := time.ParseDuration(get(k, def))
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("%s: want a duration like 1h or 30s, have %q", k, get(k, def)))
		}
		return d
	}
	cfg := Config{
		Listen:          get("ADMIN_LISTEN", "127.0.0.1:8001"),
		DatabaseURL:     get("DATABASE_URL", "postgres://postgres@127.0.0.1:55432/deltaplane?sslmode=disable"),
		Brokers:         broker.Brokers(get("KAFKA_BROKERS", "127.0.0.1:9092")),
		TopicPrefix:     getenv("TOPIC_PREFIX"),
		Token:           getenv("ADMIN_TOKEN"),
		OutboxRetention: dur("OUTBOX_RETENTION", "1h"),
		IdemRetention:   dur("IDEMPOTENCY_RETENTION", "24h"),
		StartupTimeout:  dur("ADMIN_STARTUP_TIMEOUT", "2m"),
		RelayTick:       dur("OUTBOX_POLL_INTERVAL", "5s"),
		ClusterPoll:     dur("CLUSTER_POLL_INTERVAL", "2s"),
	}
	n, err := strconv.ParseInt(get("ADMIN_MAX_BODY_BYTES", "1048576"), 10, 64)
	if err != nil || n < 1 {
		errs = append(errs, fmt.Errorf("ADMIN_MAX_BODY_BYTES: want a positive integer, have %q", get("ADMIN_MAX_BODY_BYTES", "")))
	}
	cfg.MaxBodyBytes = n
	n, err = strconv.ParseInt(get("ADMIN_MAX_CONFIG_BYTES", "134217728"), 10, 64)
	if err != nil || n < 1 {
		errs = append(errs, fmt.Errorf("ADMIN_MAX_CONFIG_BYTES: want a positive integer, have %q", get("ADMIN_MAX_CONFIG_BYTES", "")))
	}
	cfg.MaxConfigBytes = n
	if err := cfg.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL: %w", err))
	}
	if len(cfg.Brokers) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS: no broker"))
	}
	if _, err := url.Parse(cfg.DatabaseURL); err != nil {
		errs = append(errs, fmt.Errorf("DATABASE_URL: %w", err))
	}
	return cfg, errors.Join(errs...)
}

// LogValue logs the configuration once, secrets masked.
func (c Config) LogValue() slog.Value {
	dsn := c.DatabaseURL
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			dsn = u.String()
		}
	}
	token := ""
	if c.Token != "" {
		token = "xxxxx"
	}
	return slog.GroupValue(
		slog.String("listen", c.Listen),
		slog.String("database_url", dsn),
		slog.Any("kafka_brokers", c.Brokers),
		slog.String("topic_prefix", c.TopicPrefix),
		slog.String("admin_token", token),
		slog.Int64("max_body_bytes", c.MaxBodyBytes),
		slog.Int64("max_config_bytes", c.MaxConfigBytes),
		slog.Duration("outbox_retention", c.OutboxRetention),
		slog.Duration("idempotency_retention", c.IdemRetention),
		slog.Duration("startup_timeout", c.StartupTimeout),
		slog.Duration("relay_poll_interval", c.RelayTick),
		slog.Duration("cluster_poll_interval", c.ClusterPoll),
		slog.String("log_level", c.LogLevel.String()),
	)
}
