package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Config is the sync-gateway's configuration; every value comes from an
// environment variable with a default.
type Config struct {
	Listen         string        // SYNC_LISTEN: /health, /status, /metrics
	Mode           string        // SYNC_MODE: incremental | full
	Group          string        // SYNC_GROUP: consumer group of cp.changes
	Brokers        []string      // KAFKA_BROKERS
	TopicPrefix    string        // TOPIC_PREFIX
	MaxRecordBytes int           // SYNC_MAX_RECORD_BYTES: larger cp.changes records are quarantined
	SessionTimeout time.Duration // SYNC_SESSION_TIMEOUT: consumer group session timeout
	Coalesce       time.Duration // SYNC_FULL_COALESCE: full mode waits this long for quiet input
	CoalesceMax    time.Duration // SYNC_FULL_COALESCE_MAX: and defers a snapshot at most this long
	IdleCheck      time.Duration // SYNC_IDLE_CHECK: while idle, the active instance checks dp.deltas' end offset this often
	CompactionLag  time.Duration // SYNC_COMPACTION_LAG: dp.deltas' min.compaction.lag.ms, the time to repair a late write
	StartTimeout   time.Duration // SYNC_START_TIMEOUT: how long to wait for Kafka at start
	InstanceID     string        // SYNC_INSTANCE_ID: Kafka client id (default hostname-pid)
	LogLevel       slog.Level    // LOG_LEVEL
}

func loadConfig(getenv func(string) string) (Config, error) {
	get := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	var errs []error
	dur := func(k, def string) time.Duration {
		d, err := time.ParseDuration(get(k, def))
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s: want a positive duration, have %q", k, get(k, def)))
		}
		return d
	}
	host, _ := os.Hostname()
	c := Config{
		Listen:         get("SYNC_LISTEN", "127.0.0.1:8005"),
		Mode:           get("SYNC_MODE", "incremental"),
		Group:          get("SYNC_GROUP", "deltaplane-sync-gateway"),
		Brokers:        broker.Brokers(get("KAFKA_BROKERS", "127.0.0.1:9092")),
		TopicPrefix:    getenv("TOPIC_PREFIX"),
		SessionTimeout: dur("SYNC_SESSION_TIMEOUT", "10s"),
		Coalesce:       dur("SYNC_FULL_COALESCE", "50ms"),
		CoalesceMax:    dur("SYNC_FULL_COALESCE_MAX", "1s"),
		IdleCheck:      dur("SYNC_IDLE_CHECK", "1s"),
		CompactionLag:  dur("SYNC_COMPACTION_LAG", broker.DefaultCompactionLag.String()),
		StartTimeout:   dur("SYNC_START_TIMEOUT", "2m"),
		InstanceID:     get("SYNC_INSTANCE_ID", fmt.Sprintf("%s-%d", host, os.Getpid())),
	}
	if c.Mode != "incremental" && c.Mode != "full" {
		errs = append(errs, fmt.Errorf("SYNC_MODE: want incremental or full, have %q", c.Mode))
	}
	maxRecord := strconv.Itoa(wire.MaxRecordBytes)
	n, err := strconv.Atoi(get("SYNC_MAX_RECORD_BYTES", maxRecord))
	if err != nil || n <= 0 || n > wire.MaxRecordBytes {
		errs = append(errs, fmt.Errorf("SYNC_MAX_RECORD_BYTES: want 1..%d, have %q", wire.MaxRecordBytes, get("SYNC_MAX_RECORD_BYTES", maxRecord)))
	}
	c.MaxRecordBytes = n
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS: empty"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("SYNC_GROUP: empty"))
	}
	if err := c.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL: %w", err))
	}
	return c, errors.Join(errs...)
}

// LogValue logs the configuration once at start (no secrets in it).
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("listen", c.Listen), slog.String("mode", c.Mode), slog.String("group", c.Group),
		slog.Any("brokers", c.Brokers), slog.String("topic_prefix", c.TopicPrefix),
		slog.Int("max_record_bytes", c.MaxRecordBytes), slog.Duration("session_timeout", c.SessionTimeout),
		slog.Duration("full_coalesce", c.Coalesce), slog.Duration("full_coalesce_max", c.CoalesceMax),
		slog.Duration("idle_check", c.IdleCheck), slog.Duration("compaction_lag", c.CompactionLag),
		slog.String("instance_id", c.InstanceID), slog.String("log_level", c.LogLevel.String()),
	)
}
