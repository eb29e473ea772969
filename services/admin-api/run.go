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
)

// run starts admin-api and blocks until ctx ends, then shuts down.
func run(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, cfgErr := loadConfig(getenv)
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: cfg.LogLevel})).With("service", "admin-api")
	if cfgErr != nil {
		return fmt.Errorf("config: %w", cfgErr)
	}
	log.Info("starting", "config", cfg)

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

	tracker := cluster.New(cfg.Brokers, cfg.TopicPrefix, cfg.ClusterPoll, log)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	host, _ := os.Hostname()
	e := api.New(api.Config{
		Token: cfg.Token, MaxBodyBytes: cfg.MaxBodyBytes, MaxConfigBytes: cfg.MaxConfigBytes, ListenAddr: ln.Addr().String(),
		NodeID: uuid.NewSHA1(uuid.NameSpaceOID, []byte(host+ln.Addr().String())).String(),
	}, app.New(st), tracker, log)
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}

	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	// Writes are accepted while Kafka is away (they wait in the outbox);
	// the relay starts once cp.changes is verified, and a topic with the
	// wrong configuration stops admin-api.
	fatal := make(chan error, 1)
	wg.Go(func() {
		err := broker.EnsureTopics(relayCtx, cfg.Brokers, 0, broker.Compacted(topic, nil))
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
	wg.Go(func() { tracker.Run(relayCtx) })
	wg.Go(func() { st.ExpireIdempotency(relayCtx, cfg.IdemRetention, time.Minute, log.With("component", "store")) })
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("admin api listening", "addr", ln.Addr().String())

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
