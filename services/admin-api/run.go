package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/api"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/app"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/cluster"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/database"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/outbox"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
)

// run starts admin-api and blocks until ctx ends, then shuts down.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, cfgErr := loadConfig(getenv)
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).With("service", "admin-api")
	if cfgErr != nil {
		return fmt.Errorf("config: %w", cfgErr)
	}
	log.Info("starting", "config", cfg)
	if err := loadPluginSchemas(getenv, log); err != nil {
		return err
	}
	restoreKafka, err := broker.Secure(cfg.KafkaTLS)
	if err != nil {
		return err
	}
	defer restoreKafka()

	db, err := database.Open(ctx, cfg.DatabaseURL, cfg.StartupTimeout, log.With("component", "database"))
	if err != nil {
		return err
	}
	sqlDB, err := db.DB()
	if err != nil {
		return err
	}
	defer sqlDB.Close()
	if err := database.Migrate(ctx, db, log.With("component", "database")); err != nil {
		return err
	}

	topic := cfg.TopicPrefix + wire.TopicChanges
	st := store.New(db, entity.Types)
	relay := outbox.New(outbox.Config{
		DSN: cfg.DatabaseURL, Brokers: cfg.Brokers, Topic: topic,
		Retention: cfg.OutboxRetention, Tick: cfg.RelayTick,
	}, db, log)

	ap := app.New(st)
	ap.SetLogger(log.With("component", "app"))
	tracker := cluster.New(cfg.Brokers, cfg.TopicPrefix, cfg.ClusterPoll, log)
	tracker.SetLiveTTL(cfg.LiveTTL)
	tracker.SetSyncGroup(cfg.SyncGroup)
	if cfg.KafkaTLS.Enabled() {
		v, err := cluster.NewHeartbeatVerifier(cfg.KafkaTLS.CA)
		if err != nil {
			return err
		}
		tracker.RequireSigned(v)
	}
	var gate broker.Gate

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	host, _ := os.Hostname()
	e := api.New(api.Config{
		Token: cfg.Token, MaxBodyBytes: cfg.MaxBodyBytes, MaxConfigBytes: cfg.MaxConfigBytes, ListenAddr: ln.Addr().String(),
		NodeID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(host+ln.Addr().String())).String(),
	}, ap, tracker, log)
	srv := &http.Server{Handler: gate.Wrap("admin-api", e), ReadHeaderTimeout: 10 * time.Second}

	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	// Writes are accepted while Kafka is away (they wait in the outbox);
	// the relay starts once cp.changes is verified, and a topic with the
	// wrong configuration stops admin-api.
	fatal := make(chan error, 1)
	wg.Go(func() {
		// On a secured cluster, an ACL refusal is reported once (log and
		// /status) and nothing retries it: see docs/security.md.
		if cfg.KafkaTLS.Enabled() {
			var refused *broker.RefusedError
			if err := broker.AwaitAccess(relayCtx, cfg.Brokers, kafkaNeeds(cfg)...); errors.As(err, &refused) {
				log.Error("kafka refuses admin-api's access; not relaying until restarted with the ACLs of docs/security.md", "refused", refused.Error())
				gate.Refuse(refused)
				return
			} else if err != nil {
				return
			}
			wg.Go(func() { gate.Watch(relayCtx, cfg.Brokers, cfg.KafkaTLS.CheckEvery, log, kafkaNeeds(cfg)...) })
		}
		wg.Go(func() { tracker.Run(relayCtx) })
		err := broker.EnsureTopics(relayCtx, cfg.Brokers, 0, broker.Compacted(topic, nil).WithReplicas(cfg.Replication))
		switch {
		case relayCtx.Err() != nil:
			return
		case errors.Is(err, broker.ErrTopicMismatch):
			fatal <- fmt.Errorf("refusing to run: %w", err)
			return
		case err != nil:
			fatal <- fmt.Errorf("kafka topics: %w", err)
			return
		}
		log.Info("topic verified", "topic", topic)
		_ = relay.Run(relayCtx)
	})
	wg.Go(func() { st.ExpireIdempotency(relayCtx, cfg.IdemRetention, time.Minute, log.With("component", "store")) })
	serveErr := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			serveErr <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
			return
		}
		serveErr <- srv.Serve(ln)
	}()
	log.Info("admin api listening", "addr", ln.Addr().String(), "tls", cfg.TLSCert != "")

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		log.Error("http server stopped", "err", err)
	case err = <-fatal:
		log.Error("stopping", "err", err)
	}
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if serr := srv.Shutdown(shutCtx); serr != nil {
		log.Warn("http shutdown", "err", serr)
	}
	// The relay stops after the last request so that committed writes get
	// a chance to be published; anything left is published by the next
	// leader from the outbox.
	stopRelay()
	wg.Wait()
	log.Info("stopped")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// kafkaNeeds is the access admin-api needs on a secured cluster (the
// admin-api rows of broker.Grants).
func kafkaNeeds(cfg Config) []broker.Need {
	p := cfg.TopicPrefix
	needs := []broker.Need{
		{Topic: p + wire.TopicChanges, Op: kafka.ACLOperationTypeWrite},
		{Topic: p + wire.TopicChanges, Op: kafka.ACLOperationTypeDescribeConfigs},
		{Topic: p + wire.TopicStatus, Op: kafka.ACLOperationTypeRead},
		{Topic: p + wire.TopicDeltas, Op: kafka.ACLOperationTypeRead},
	}
	for _, t := range []string{wire.TopicChanges, wire.TopicDeltas, wire.TopicFull} {
		needs = append(needs, broker.Need{Topic: p + t + wire.DLQSuffix, Op: kafka.ACLOperationTypeRead})
	}
	return needs
}
