//go:build integration

package outbox_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/database"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/outbox"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/google/uuid"
)

// TestOneLeaderPublishesInOrder runs two relays on one database (two
// admin-api replicas): only the leader publishes, so each transaction
// appears once, in order; published rows past retention are deleted.
func TestOneLeaderPublishesInOrder(t *testing.T) {
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dsn := testenv.Database(t)
	brokers := testenv.Kafka(t)
	topic := testenv.TopicPrefix(t) + wire.TopicChanges
	if err := broker.EnsureTopics(ctx, brokers, 30*time.Second, broker.Compacted(topic, nil)); err != nil {
		t.Fatal(err)
	}
	db, err := database.Open(ctx, dsn, 30*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	defer sqlDB.Close()
	if err := database.Migrate(ctx, db, log); err != nil {
		t.Fatal(err)
	}
	st := store.New(db, entity.Types)
	if err := db.Exec(`INSERT INTO idempotency_keys (key, request_hash, status, response) VALUES ('old', 'h', 201, '')`).Error; err != nil {
		t.Fatal(err)
	}
	// Writes committed before any relay runs wait in the outbox.
	const n = 30
	for i := range n {
		_, err := st.Write(ctx, func(tx *store.Tx) error {
			e, errs := entity.Normalize(entity.Service, map[string]any{"host": "h.internal"}, nil,
				map[string]any{"id": uuid.NewString(), "created_at": int64(i), "updated_at": int64(i)})
			if errs != nil {
				return errs
			}
			_, err := tx.Insert(ctx, entity.Service, e)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		r := outbox.New(outbox.Config{DSN: dsn, Brokers: brokers, Topic: topic, Retention: time.Millisecond,
			Tick: 200 * time.Millisecond, Batch: 7, CleanEvery: 100 * time.Millisecond, IdempotencyRetention: time.Millisecond}, db, log)
		wg.Go(func() { _ = r.Run(rctx) })
	}
	defer func() { cancel(); wg.Wait() }()

	evs := testenv.ReadChanges(t, ctx, brokers, topic, n, 30*time.Second)
	for i, ev := range evs {
		if ev.Tx != uint64(i+1) {
			t.Fatalf("record %d has tx %d; want %d (no duplicate, no reorder)", i, ev.Tx, i+1)
		}
	}
	testenv.Eventually(t, 20*time.Second, "published rows and old idempotency keys deleted after retention", func() bool {
		var left int64
		db.Raw(`SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM idempotency_keys)`).Scan(&left)
		return left == 0
	})
	status, err := st.Outbox(ctx)
	if err != nil || status.PublishedTx != n || status.Backlog != 0 {
		t.Errorf("outbox status = %+v, %v", status, err)
	}
}
