package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/monitor"
	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/pipeline"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, cfgErr := loadConfig(getenv)
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).With("service", "sync-gateway")
	if cfgErr != nil {
		return fmt.Errorf("config: %w", cfgErr)
	}
	log.Info("starting", "config", cfg)
	restoreKafka, err := broker.Secure(cfg.KafkaTLS)
	if err != nil {
		return err
	}
	defer restoreKafka()
	// On a secured cluster an ACL refusal is reported once (log and a 503
	// /status naming it) and the pipeline does not start: see
	// docs/security.md.
	if cfg.KafkaTLS.Enabled() {
		var refused *broker.RefusedError
		if err := broker.AwaitAccess(ctx, cfg.Brokers, kafkaNeeds(cfg)...); errors.As(err, &refused) {
			log.Error("kafka refuses the sync-gateway's access; not starting until restarted with the ACLs of docs/security.md", "refused", refused.Error())
			return serveRefused(ctx, cfg.Listen, refused, log)
		} else if err != nil {
			return fmt.Errorf("kafka access: %w", err)
		}
	}

	if err := broker.EnsureTopics(ctx, cfg.Brokers, cfg.StartTimeout, topics(cfg)...); err != nil {
		if errors.Is(err, broker.ErrTopicMismatch) {
			return fmt.Errorf("refusing to start: %w", err)
		}
		return fmt.Errorf("ensure topics: %w", err)
	}
	// A dp.deltas created by another service (or before the lag existed)
	// lacks it: reported, not refused (see README, Late writes).
	if devs, err := broker.Deviations(ctx, cfg.Brokers, topics(cfg)...); err != nil {
		log.Warn("check advised topic configs", "err", err)
	} else {
		for _, d := range devs {
			log.Error("topic config below what the late-write repair needs; alter the topic", "component", "topics", "deviation", d)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mode := pipeline.Delta()
	if cfg.Mode == wire.ModeFull {
		mode = pipeline.Full(cfg.Coalesce, cfg.CoalesceMax)
	}
	p := pipeline.New(pipeline.Config{
		Brokers: cfg.Brokers, Prefix: cfg.TopicPrefix, Group: cfg.Group, ClientID: cfg.InstanceID,
		Sync: mode, MaxRecordBytes: cfg.MaxRecordBytes, SessionTimeout: cfg.SessionTimeout, IdleCheck: cfg.IdleCheck,
	}, log, pipeline.NewMetrics(reg))

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	var gate broker.Gate // an ACL removed while running: see docs/security.md
	srv := &http.Server{Handler: gate.Wrap("sync-gateway", monitor.Handler(p, reg)), ReadHeaderTimeout: 5 * time.Second}
	httpErr := make(chan error, 1)
	go func() { httpErr <- srv.Serve(ln) }()
	log.Info("listening", "component", "http", "addr", ln.Addr().String())

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.KafkaTLS.Enabled() {
		go gate.Watch(runCtx, cfg.Brokers, cfg.KafkaTLS.CheckEvery, log, kafkaNeeds(cfg)...)
	}
	pipeErr := make(chan error, 1)
	go func() { pipeErr <- p.Run(runCtx) }()

	var result error
	select {
	case err := <-pipeErr:
		if err != nil {
			result = fmt.Errorf("pipeline: %w", err)
		}
	case err := <-httpErr:
		result = fmt.Errorf("http: %w", err)
		cancel()
		<-pipeErr
	case <-ctx.Done():
		cancel()
		if err := <-pipeErr; err != nil {
			log.Warn("pipeline stopped", "err", err)
		}
	}
	shutCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	srv.Shutdown(shutCtx)
	log.Info("stopped")
	return result
}

// topics is what the sync-gateway requires of its topics. dp.deltas keeps
// every record from the cleaner for CompactionLag (the late-write repair's
// time); cp.changes and dp.full do not need it: nothing repairs them from
// their own history.
func topics(cfg Config) []broker.TopicSpec {
	specs := []broker.TopicSpec{
		broker.Compacted(cfg.TopicPrefix+wire.TopicChanges, nil),
		broker.Compacted(cfg.TopicPrefix+wire.TopicDeltas, nil).WithCompactionLag(cfg.CompactionLag),
		broker.Log(cfg.TopicPrefix + wire.TopicChanges + wire.DLQSuffix),
	}
	if cfg.Mode == wire.ModeFull {
		specs = append(specs, broker.Compacted(cfg.TopicPrefix+wire.TopicFull, nil))
	}
	for i := range specs {
		specs[i] = specs[i].WithReplicas(cfg.Replication)
	}
	return specs
}

// kafkaNeeds is the access the sync-gateway needs on a secured cluster
// (its rows of broker.Grants).
func kafkaNeeds(cfg Config) []broker.Need {
	p := cfg.TopicPrefix
	out := []broker.Need{
		{Topic: p + wire.TopicChanges, Op: kafka.ACLOperationTypeRead},
		{Topic: p + wire.TopicChanges, Group: cfg.Group, Op: kafka.ACLOperationTypeRead},
	}
	writes := []string{p + wire.TopicDeltas, p + wire.TopicChanges + wire.DLQSuffix}
	if cfg.Mode == wire.ModeFull {
		writes = append(writes, p+wire.TopicFull)
	}
	for _, t := range writes {
		out = append(out, broker.Need{Topic: t, Op: kafka.ACLOperationTypeWrite}, broker.Need{Topic: t, Op: kafka.ACLOperationTypeRead})
	}
	for _, t := range append(writes, p+wire.TopicChanges) {
		out = append(out, broker.Need{Topic: t, Op: kafka.ACLOperationTypeDescribeConfigs})
	}
	return out
}

// serveRefused answers /status with the refusal (503) until ctx ends.
func serveRefused(ctx context.Context, listen string, refused *broker.RefusedError, log *slog.Logger) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", listen, err)
	}
	var gate broker.Gate
	gate.Refuse(refused)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }) // alive; /status says why idle
	srv := &http.Server{Handler: gate.Wrap("sync-gateway", mux), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("listening", "component", "http", "addr", ln.Addr().String(), "refused", true)
	<-ctx.Done()
	shutCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	return srv.Shutdown(shutCtx)
}
