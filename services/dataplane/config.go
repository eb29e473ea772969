package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Config is the data plane's whole configuration, read once from the
// environment.
type Config struct {
	NodeID            string        // DP_NODE_ID; "" = generated and kept in DataDir/node-id
	DataDir           string        // DP_DATA_DIR
	ProxyListen       string        // DP_PROXY_LISTEN
	StatusListen      string        // DP_STATUS_LISTEN
	SyncMode          string        // SYNC_MODE: incremental | full
	Brokers           []string      // KAFKA_BROKERS
	TopicPrefix       string        // TOPIC_PREFIX
	GroupPrefix       string        // DP_GROUP_PREFIX
	HeartbeatInterval time.Duration // DP_HEARTBEAT_INTERVAL
	LogLevel          slog.Level    // LOG_LEVEL
}

// Sync modes.
const (
	ModeIncremental = "incremental"
	ModeFull        = "full"
)

func loadConfig(getenv func(string) string) (Config, error) {
	get := func(k, def string) string {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
		return def
	}
	var errs []error
	cfg := Config{
		NodeID:       get("DP_NODE_ID", ""),
		DataDir:      get("DP_DATA_DIR", "./.local/dataplane"),
		ProxyListen:  get("DP_PROXY_LISTEN", "127.0.0.1:8000"),
		StatusListen: get("DP_STATUS_LISTEN", "127.0.0.1:8100"),
		SyncMode:     get("SYNC_MODE", ModeIncremental),
		Brokers:      broker.Brokers(get("KAFKA_BROKERS", "127.0.0.1:9092")),
		TopicPrefix:  getenv("TOPIC_PREFIX"),
		GroupPrefix:  get("DP_GROUP_PREFIX", "deltaplane-dp-"),
	}
	hb, err := time.ParseDuration(get("DP_HEARTBEAT_INTERVAL", "5s"))
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("DP_HEARTBEAT_INTERVAL: %w", err))
	case hb <= 0:
		errs = append(errs, fmt.Errorf("DP_HEARTBEAT_INTERVAL: %s must be positive", hb))
	}
	cfg.HeartbeatInterval = hb
	if err := cfg.LogLevel.UnmarshalText([]byte(get("LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL: %w", err))
	}
	switch cfg.SyncMode {
	case ModeIncremental, ModeFull:
	default:
		errs = append(errs, fmt.Errorf("SYNC_MODE: %q is neither %q nor %q", cfg.SyncMode, ModeIncremental, ModeFull))
	}
	if len(cfg.Brokers) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS: empty"))
	}
	for name, addr := range map[string]string{"DP_PROXY_LISTEN": cfg.ProxyListen, "DP_STATUS_LISTEN": cfg.StatusListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return cfg, errors.Join(errs...)
}

// Topic names this data plane uses.
func (c Config) deltasTopic() string { return c.TopicPrefix + wire.TopicDeltas }
func (c Config) fullTopic() string   { return c.TopicPrefix + wire.TopicFull }

// configTopic is the topic the configuration comes from in the sync mode.
func (c Config) configTopic() string {
	if c.SyncMode == ModeFull {
		return c.fullTopic()
	}
	return c.deltasTopic()
}
func (c Config) statusTopic() string { return c.TopicPrefix + wire.TopicStatus }

// dlqTopic receives the records of the config topic this node quarantines.
func (c Config) dlqTopic() string { return c.configTopic() + wire.DLQSuffix }

// LogValue logs the configuration once at start (it holds no secrets).
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("node_id", c.NodeID),
		slog.String("data_dir", c.DataDir),
		slog.String("proxy_listen", c.ProxyListen),
		slog.String("status_listen", c.StatusListen),
		slog.String("sync_mode", c.SyncMode),
		slog.String("kafka_brokers", strings.Join(c.Brokers, ",")),
		slog.String("topic_prefix", c.TopicPrefix),
		slog.String("group_prefix", c.GroupPrefix),
		slog.Duration("heartbeat_interval", c.HeartbeatInterval),
		slog.String("log_level", c.LogLevel.String()),
	)
}
