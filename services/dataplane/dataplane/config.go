package dataplane

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/shared/config"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Config is the data plane's whole configuration, read once from the
// environment: each field's variable and default are its env and envDefault
// tags, read by shared/config's rules (trimmed, blank means the default,
// durations positive, errors naming the variable).
type Config struct {
	NodeID            string        `env:"DP_NODE_ID"` // "" = generated and kept in DataDir/node-id
	DataDir           string        `env:"DP_DATA_DIR" envDefault:"./.local/dataplane"`
	ProxyListen       string        `env:"DP_PROXY_LISTEN" envDefault:"127.0.0.1:8000"`
	StatusListen      string        `env:"DP_STATUS_LISTEN" envDefault:"127.0.0.1:8100"`
	SyncMode          string        `env:"SYNC_MODE" envDefault:"incremental"` // wire.ModeIncremental | wire.ModeFull
	Brokers           []string      `env:"KAFKA_BROKERS" envDefault:"127.0.0.1:9092"`
	TopicPrefix       string        `env:"TOPIC_PREFIX"`
	Replication       int           `env:"KAFKA_REPLICATION_FACTOR" envDefault:"1"` // every topic must have at least this many copies
	GroupPrefix       string        `env:"DP_GROUP_PREFIX" envDefault:"deltaplane-dp-"`
	HeartbeatInterval time.Duration `env:"DP_HEARTBEAT_INTERVAL" envDefault:"5s"`
	LogLevel          slog.Level    `env:"LOG_LEVEL" envDefault:"info"`
	// PluginCacheTracking drops plugins' cached values when what they
	// derive from changes. Off only in tests that prove they would catch
	// stale values; never in production.
	PluginCacheTracking bool `env:"DP_PLUGIN_CACHE_TRACKING" envDefault:"true"`
	// ProxyTLSListen is the TLS proxy listener (Kong's 8443), "off" for
	// none; its certificates come from the certificates and snis entities,
	// by SNI, else the default certificate: the PEM files TLSCert and
	// TLSKey (Kong's ssl_cert, ssl_cert_key), or a self-signed one for
	// localhost made at start.
	ProxyTLSListen string `env:"DP_PROXY_TLS_LISTEN" envDefault:"127.0.0.1:8443"`
	TLSCert        string `env:"DP_TLS_CERT"`
	TLSKey         string `env:"DP_TLS_CERT_KEY"`

	// KAFKA_TLS_*: mutual TLS to Kafka as principal dataplane-<node id>;
	// heartbeats are signed with the same key.
	KafkaTLS config.KafkaTLS
}

func loadConfig(getenv func(string) string) (Config, error) {
	var cfg Config
	errs := []error{config.Load(&cfg, getenv)}
	switch cfg.SyncMode {
	case wire.ModeIncremental, wire.ModeFull:
	default:
		errs = append(errs, fmt.Errorf("SYNC_MODE: %q is neither %q nor %q", cfg.SyncMode, wire.ModeIncremental, wire.ModeFull))
	}
	if len(cfg.Brokers) == 0 {
		errs = append(errs, errors.New("KAFKA_BROKERS: empty"))
	}
	errs = append(errs, cfg.KafkaTLS.Check())
	listens := []struct{ name, addr string }{{"DP_PROXY_LISTEN", cfg.ProxyListen}, {"DP_STATUS_LISTEN", cfg.StatusListen}}
	if cfg.ProxyTLSListen != "off" {
		listens = append(listens, struct{ name, addr string }{"DP_PROXY_TLS_LISTEN", cfg.ProxyTLSListen})
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		errs = append(errs, errors.New("DP_TLS_CERT: set it and DP_TLS_CERT_KEY, or neither"))
	}
	for _, l := range listens {
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", l.name, err))
		}
	}
	// The status listener (its /status/config names every credential's
	// digest) never shares a port with proxied traffic, whatever the host.
	_, statusPort, _ := net.SplitHostPort(cfg.StatusListen)
	for _, l := range listens {
		if _, port, err := net.SplitHostPort(l.addr); err == nil && l.name != "DP_STATUS_LISTEN" && port == statusPort && port != "0" {
			errs = append(errs, fmt.Errorf("DP_STATUS_LISTEN: port %s is %s's: the status listener must stay off the proxy ports", port, l.name))
		}
	}
	return cfg, errors.Join(errs...)
}

// Topic names this data plane uses.
func (c Config) deltasTopic() string { return c.TopicPrefix + wire.TopicDeltas }
func (c Config) fullTopic() string   { return c.TopicPrefix + wire.TopicFull }

// configTopic is the topic the configuration comes from in the sync mode.
func (c Config) configTopic() string {
	if c.SyncMode == wire.ModeFull {
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
		slog.String("proxy_tls_listen", c.ProxyTLSListen),
		slog.String("tls_cert", c.TLSCert),
		slog.String("sync_mode", c.SyncMode),
		slog.String("kafka_brokers", strings.Join(c.Brokers, ",")),
		slog.String("topic_prefix", c.TopicPrefix),
		slog.Int("kafka_replication_factor", c.Replication),
		slog.String("group_prefix", c.GroupPrefix),
		slog.Duration("heartbeat_interval", c.HeartbeatInterval),
		slog.String("log_level", c.LogLevel.String()),
		slog.Bool("plugin_cache_tracking", c.PluginCacheTracking),
		slog.Any("kafka_tls", c.KafkaTLS),
	)
}
