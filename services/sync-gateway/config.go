package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/config"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Config is the sync-gateway's configuration: each field's variable and
// default are its env and envDefault tags (the defaults that are constants
// elsewhere are set in loadConfig), read by shared/config's rules (trimmed,
// blank means the default, durations and sizes positive, errors naming the
// variable).
type Config struct {
	Listen         string          `env:"SYNC_LISTEN" envDefault:"127.0.0.1:8005"`         // /health, /status, /metrics
	Mode           string          `env:"SYNC_MODE" envDefault:"incremental"`              // incremental | full
	Group          string          `env:"SYNC_GROUP" envDefault:"deltaplane-sync-gateway"` // consumer group of cp.changes
	Brokers        []string        `env:"KAFKA_BROKERS" envDefault:"127.0.0.1:9092"`
	TopicPrefix    string          `env:"TOPIC_PREFIX"`
	Replication    int             `env:"KAFKA_REPLICATION_FACTOR" envDefault:"1"` // every topic must have at least this many copies (broker.TopicSpec.Replicas)
	MaxRecordBytes int             `env:"SYNC_MAX_RECORD_BYTES"`                   // larger cp.changes records are quarantined; default wire.MaxRecordBytes
	SessionTimeout time.Duration   `env:"SYNC_SESSION_TIMEOUT" envDefault:"10s"`   // consumer group session timeout
	Coalesce       time.Duration   `env:"SYNC_FULL_COALESCE" envDefault:"50ms"`    // full mode waits this long for quiet input
	CoalesceMax    time.Duration   `env:"SYNC_FULL_COALESCE_MAX" envDefault:"1s"`  // and defers a snapshot at most this long
	IdleCheck      time.Duration   `env:"SYNC_IDLE_CHECK" envDefault:"1s"`         // while idle, the active instance checks dp.deltas' end offset this often
	CompactionLag  time.Duration   `env:"SYNC_COMPACTION_LAG"`                     // dp.deltas' min.compaction.lag.ms; default broker.DefaultCompactionLag
	StartTimeout   time.Duration   `env:"SYNC_START_TIMEOUT" envDefault:"2m"`      // how long to wait for Kafka at start
	InstanceID     string          `env:"SYNC_INSTANCE_ID"`                        // Kafka client id; default hostname-pid
	LogLevel       slog.Level      `env:"LOG_LEVEL" envDefault:"info"`
	KafkaTLS       config.KafkaTLS // KAFKA_TLS_*: mutual TLS to Kafka as principal sync-gateway
}

func loadConfig(getenv func(string) string) (Config, error) {
	host, _ := os.Hostname()
	c := Config{
		MaxRecordBytes: wire.MaxRecordBytes,
		CompactionLag:  broker.DefaultCompactionLag,
		InstanceID:     fmt.Sprintf("%s-%d", host, os.Getpid()),
	}
	errs := []error{config.Load(&c, getenv)}
	if c.Mode != wire.ModeIncremental && c.Mode != wire.ModeFull {
		errs = append(errs, fmt.Errorf("SYNC_MODE: want incremental or full, have %q", c.Mode))
	}
	if c.MaxRecordBytes > wire.MaxRecordBytes {
		errs = append(errs, fmt.Errorf("SYNC_MAX_RECORD_BYTES: want 1..%d, have %d", wire.MaxRecordBytes, c.MaxRecordBytes))
	}
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS: empty"))
	}
	errs = append(errs, c.KafkaTLS.Check())
	return c, errors.Join(errs...)
}

// LogValue logs the configuration once at start (no secrets in it).
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("listen", c.Listen), slog.String("mode", c.Mode), slog.String("group", c.Group),
		slog.Any("brokers", c.Brokers), slog.String("topic_prefix", c.TopicPrefix),
		slog.Int("kafka_replication_factor", c.Replication),
		slog.Int("max_record_bytes", c.MaxRecordBytes), slog.Duration("session_timeout", c.SessionTimeout),
		slog.Duration("full_coalesce", c.Coalesce), slog.Duration("full_coalesce_max", c.CoalesceMax),
		slog.Duration("idle_check", c.IdleCheck), slog.Duration("compaction_lag", c.CompactionLag),
		slog.String("instance_id", c.InstanceID), slog.String("log_level", c.LogLevel.String()),
		slog.Any("kafka_tls", c.KafkaTLS),
	)
}
