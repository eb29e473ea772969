// Package dataplane is the deltaplane data plane as a library: it follows
// dp.deltas into a local store and proxies HTTP traffic with the
// configuration it holds. A data plane with custom plugins is a main
// package that calls Main with them (see docs/plugins.md).
package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/consumer"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/health"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/heartbeat"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/plugin/ratelimit"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/proxy"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/status"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/tlsconf"
	"github.com/deltaplane/deltaplane/services/dataplane/sdk"
	"github.com/deltaplane/deltaplane/shared/attest"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/segmentio/kafka-go"
)

// Main runs a data plane with the built-in plugins and plugins until
// SIGINT or SIGTERM and exits the process: 0 after a clean stop, 1 on
// error. With the arguments "schemas -out DIR" it writes every plugin's
// config schema to DIR/<name>.json (the files admin-api loads from
// ADMIN_PLUGIN_SCHEMAS_DIR) and exits.
func Main(plugins ...sdk.Plugin) {
	if len(os.Args) > 1 {
		if err := command(os.Args[1:], os.Stdout, plugins); err != nil {
			fmt.Fprintln(os.Stderr, "dataplane:", err)
			os.Exit(2)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, os.Getenv, os.Stdout, plugins...); err != nil {
		fmt.Fprintln(os.Stderr, "dataplane:", err)
		stop()
		os.Exit(1)
	}
}

// Run runs a data plane with the built-in plugins and plugins, configured
// by getenv (the variables of Config), logging JSON to stdout, until ctx is
// done or it fails.
func Run(ctx context.Context, getenv func(string) string, stdout io.Writer, plugins ...sdk.Plugin) error {
	cfg, cfgErr := loadConfig(getenv)
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).With("service", "dataplane")
	if cfgErr != nil {
		log.Error("bad configuration", "err", cfgErr)
		return cfgErr
	}
	nodeID, err := resolveNodeID(cfg)
	if err != nil {
		return err
	}
	cfg.NodeID = nodeID
	log = log.With("node_id", nodeID)
	log.Info("starting", "config", cfg)
	restoreKafka, err := broker.Secure(cfg.KafkaTLS)
	if err != nil {
		return err
	}
	defer restoreKafka()
	var signer *attest.Signer
	if cfg.KafkaTLS.Enabled() {
		if signer, err = attest.NewSigner(cfg.KafkaTLS.Cert, cfg.KafkaTLS.Key); err != nil {
			return err
		}
		if want := broker.DataPlanePrincipal(nodeID); signer.CommonName() != want {
			return fmt.Errorf("KAFKA_TLS_CERT: CN=%s, but node %s authenticates as CN=%s (docs/security.md)", signer.CommonName(), nodeID, want)
		}
	}
	var gate broker.Gate

	st, err := store.Open(cfg.DataDir, store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()

	applySeconds := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "deltaplane", Subsystem: "dataplane", Name: "apply_seconds",
		Help: "Time to apply one batch (or full snapshot): hash check, durable store, publish.", Buckets: prometheus.ExponentialBuckets(0.00005, 2, 18)})
	propagationSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "deltaplane", Subsystem: "dataplane", Name: "propagation_seconds",
		Help: "Time from producing a batch's last record to the configuration being live here.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18)})
	quarantined := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "deltaplane", Subsystem: "dataplane", Name: "quarantined_total",
		Help: "Records written to the DLQ topic, by reason kind."}, []string{"reason"})
	mode := consumer.Delta()
	if cfg.SyncMode == wire.ModeFull {
		mode = consumer.Full()
	}
	cons, err := consumer.New(consumer.Config{
		Brokers:       cfg.Brokers,
		Topic:         cfg.configTopic(),
		Mode:          mode,
		DLQTopic:      cfg.dlqTopic(),
		NodeID:        nodeID,
		Quarantined:   func(kind string) { quarantined.WithLabelValues(kind).Inc() },
		Group:         cfg.GroupPrefix + nodeID,
		ProbeInterval: cfg.HeartbeatInterval,
		Logger:        log,
		Applied: func(took, since time.Duration) {
			applySeconds.Observe(took.Seconds())
			propagationSeconds.Observe(since.Seconds())
		},
	}, st)
	if err != nil {
		return err
	}

	gc := newGCTuner(log, getenv) // GOGC after each configuration (memory.go)
	cons.Subscribe(gc.Notify)
	gc.Notify(cons.Snapshot(), nil, true)

	report := statusReport(cfg, cons)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	status.Register(reg, report)
	reg.MustRegister(applySeconds, propagationSeconds, quarantined)

	hb := heartbeat.New(log, cfg.Brokers, cfg.statusTopic(), nodeID, cfg.HeartbeatInterval, func() wire.Heartbeat {
		s := cons.Snapshot()
		h := wire.Heartbeat{Mode: cfg.SyncMode, Version: s.Version, Hash: s.Hash.String(), LastApply: cons.LastSync(), Resyncs: cons.Stats.Resyncs.Load(),
			ResyncReason: cons.LastResyncReason()}
		h.Errors = nodeErrors(cons)
		return h
	}, cons.Touch)
	cons.Subscribe(func(*snapshot.Snapshot, []snapshot.Event, bool) { hb.Kick() })
	if signer != nil {
		hb.SignWith(signer.Sign)
	}

	limiter := ratelimit.New(log)
	defer limiter.Close()
	fw, err := plugin.New(log, plugin.Options{Tracking: cfg.PluginCacheTracking}, withBuiltins(limiter, plugins)...)
	if err != nil {
		return err
	}
	cons.Prepare(fw.Prepare)
	cons.Subscribe(fw.Notify)

	px := proxy.New(log, cons.Snapshot, fw.Access)
	proxySeconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "deltaplane", Subsystem: "dataplane", Name: "proxy_seconds",
		Help: "Time from a proxied request to the end of its response, by route.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"route"})
	reg.MustRegister(proxySeconds)
	px.ObserveLatency(func(route string, d time.Duration) { proxySeconds.WithLabelValues(route).Observe(d.Seconds()) })
	checker := health.New(log) // upstream health checks, following every batch
	defer checker.Close()
	checker.Update(cons.Snapshot(), nil, true)
	cons.Subscribe(checker.Update)
	px.UseHealth(checker)
	upstreams := status.Upstreams(func() any { return checker.View(cons.Snapshot()) })
	servers := []*http.Server{
		{Addr: cfg.ProxyListen, Handler: fw.Wrap(px), ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
		{Addr: cfg.StatusListen, Handler: gate.Wrap("dataplane", status.Handler(report, cons.WaitVersion, func() wire.ContentView { return cons.Snapshot().Content(nodeID) }, reg, upstreams)), ReadHeaderTimeout: 10 * time.Second},
	}
	if cfg.ProxyTLSListen != "off" {
		def, err := tlsconf.Default(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return err
		}
		servers = append(servers, &http.Server{Addr: cfg.ProxyTLSListen, Handler: fw.Wrap(px), TLSConfig: tlsconf.New(log, cons.Snapshot, def).Config(),
			ReadHeaderTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)})
	}
	var listeners []net.Listener
	for _, srv := range servers {
		ln, err := net.Listen("tcp", srv.Addr)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("listen %s: %w", srv.Addr, err)
		}
		listeners = append(listeners, ln)
	}
	log.Info("listening", "proxy", listeners[0].Addr().String(), "status", listeners[1].Addr().String(), "proxy_tls", cfg.ProxyTLSListen)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for i, srv := range servers {
		wg.Go(func() {
			serve := srv.Serve
			if srv.TLSConfig != nil {
				serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
			}
			if err := serve(listeners[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				cancel(fmt.Errorf("serve %s: %w", srv.Addr, err))
			}
		})
	}
	wg.Go(func() {
		// On a secured cluster an ACL refusal is reported once (log and a
		// 503 /status naming it) and not retried; the proxy keeps serving
		// the stored configuration. See docs/security.md.
		if cfg.KafkaTLS.Enabled() {
			var refused *broker.RefusedError
			if err := broker.AwaitAccess(ctx, cfg.Brokers, kafkaNeeds(cfg)...); errors.As(err, &refused) {
				log.Error("kafka refuses this data plane's access; not following the configuration until restarted with the ACLs of docs/security.md", "refused", refused.Error())
				gate.Refuse(refused)
				return
			} else if err != nil {
				return
			}
			wg.Go(func() { gate.Watch(ctx, cfg.Brokers, cfg.KafkaTLS.CheckEvery, log, kafkaNeeds(cfg)...) })
		}
		// Topics may not exist yet: keep serving the stored configuration
		// while waiting; a topic of the wrong shape stops the data plane.
		config := broker.Compacted(cfg.configTopic(), nil)
		if cfg.configTopic() == cfg.deltasTopic() {
			// Created as the sync-gateway creates it, whoever comes first:
			// the compaction lag keeps late writes repairable.
			config = config.WithCompactionLag(broker.DefaultCompactionLag)
		}
		err := broker.EnsureTopics(ctx, cfg.Brokers, 0,
			config.WithReplicas(cfg.Replication),
			broker.Compacted(cfg.statusTopic(), nil).WithReplicas(cfg.Replication),
			broker.Log(cfg.dlqTopic()).WithReplicas(cfg.Replication))
		if err != nil {
			if ctx.Err() == nil {
				cancel(err)
			}
			return
		}
		wg.Go(func() { hb.Run(ctx) })
		if err := cons.Run(ctx); err != nil {
			cancel(err)
		}
	})

	<-ctx.Done()
	cause := context.Cause(ctx)
	if errors.Is(cause, context.Canceled) {
		cause = nil
	}
	log.Info("shutting down", "cause", fmt.Sprint(cause))
	shutdownCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer done()
	for _, srv := range servers {
		_ = srv.Shutdown(shutdownCtx)
	}
	wg.Wait()
	log.Info("stopped")
	return cause
}

// resolveNodeID returns DP_NODE_ID, or the id kept in the data directory,
// generating and keeping one on first start.
func resolveNodeID(cfg Config) (string, error) {
	if cfg.NodeID != "" {
		return cfg.NodeID, nil
	}
	path := filepath.Join(cfg.DataDir, "node-id")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read node id: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return "", fmt.Errorf("create data dir: %w", err)
	}
	id := uuid.NewString()
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("keep node id: %w", err)
	}
	return id, nil
}

func statusReport(cfg Config, cons *consumer.Consumer) func() status.Status {
	return func() status.Status {
		s := cons.Snapshot()
		contact := cons.LastContact()
		out := status.Status{
			NodeID:            cfg.NodeID,
			Mode:              cfg.SyncMode,
			Version:           s.Version,
			Hash:              s.Hash.String(),
			LastSync:          status.FormatTime(cons.LastSync()),
			RecordsConsumed:   cons.Stats.RecordsConsumed.Load(),
			BytesConsumed:     cons.Stats.BytesConsumed.Load(),
			DuplicatesSkipped: cons.Stats.DuplicatesSkipped.Load(),
			BatchesApplied:    cons.Stats.BatchesApplied.Load(),
			Resyncs:           cons.Stats.Resyncs.Load(),
			Stale:             contact.IsZero() || time.Since(contact) > 3*cfg.HeartbeatInterval,
			Entities:          s.Len(),
			Ready:             cons.Ready(),
			Lag:               cons.Lag(),
			Offset:            cons.NextOffset(),
			CommittedOffset:   cons.CommittedOffset(),
			LastContact:       status.FormatTime(contact),
			BadRecords:        cons.Stats.BadRecords.Load(),
			HashMismatches:    cons.Stats.HashMismatches.Load(),
			Gaps:              cons.Stats.Gaps.Load(),
			LastResyncReason:  cons.LastResyncReason(),
			Quarantined:       cons.Stats.Quarantined.Load(),
			PanicsRecovered:   cons.Stats.Panics.Load(),
			PoisonBatches:     cons.Stats.PoisonBatches.Load(),
			Degraded:          cons.Degraded() != "",
			Errors:            append([]string{}, nodeErrors(cons)...),
		}
		return out
	}
}

// nodeErrors are the problems /status and the heartbeat report: the last
// error, the last quarantine, and why the node is degraded ("degraded: ..."
// first; the heartbeat has no field of its own for it).
func nodeErrors(cons *consumer.Consumer) []string {
	var out []string
	if d := cons.Degraded(); d != "" {
		out = append(out, "degraded: "+d)
	}
	for _, e := range []string{cons.LastError(), cons.LastQuarantine()} {
		if e != "" && !slices.Contains(out, e) && (len(out) == 0 || out[0] != "degraded: "+e) {
			out = append(out, e)
		}
	}
	return out
}

// kafkaNeeds is the access a data plane needs on a secured cluster (its
// rows of broker.Grants).
func kafkaNeeds(cfg Config) []broker.Need {
	return []broker.Need{
		{Topic: cfg.configTopic(), Op: kafka.ACLOperationTypeRead},
		{Topic: cfg.configTopic(), Group: cfg.GroupPrefix + cfg.NodeID, Op: kafka.ACLOperationTypeRead},
		{Topic: cfg.statusTopic(), Op: kafka.ACLOperationTypeWrite},
		{Topic: cfg.dlqTopic(), Op: kafka.ACLOperationTypeWrite},
		{Topic: cfg.configTopic(), Op: kafka.ACLOperationTypeDescribeConfigs},
		{Topic: cfg.statusTopic(), Op: kafka.ACLOperationTypeDescribeConfigs},
		{Topic: cfg.dlqTopic(), Op: kafka.ACLOperationTypeDescribeConfigs},
	}
}
