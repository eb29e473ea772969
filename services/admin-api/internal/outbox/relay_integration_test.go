//go:build integration

package outbox_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/outbox"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/segmentio/kafka-go"
	"gorm.io/gorm"
)

// TestOneLeaderPublishesInOrder runs two relays on one database (two
// admin-api replicas): only the leader publishes, so each transaction
// appears once, in order; published rows past retention are deleted.
func TestOneLeaderPublishesInOrder(t *testing.T) {
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dsn, brokers, topic, db, st := setupRelay(t, log, nil)
	// Writes committed before any relay runs wait in the outbox.
	const n = 30
	insertN(t, st, entity.Service, n, func(int) map[string]any { return map[string]any{"host": "h.internal"} })
	rctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 2 {
		r := outbox.New(outbox.Config{DSN: dsn, Brokers: brokers, Topic: topic, Retention: time.Millisecond,
			Tick: 200 * time.Millisecond, Batch: 7, CleanEvery: 100 * time.Millisecond}, db, log)
		wg.Go(func() { _ = r.Run(rctx) })
	}
	defer func() { cancel(); wg.Wait() }()

	evs := testenv.ReadChanges(t, ctx, brokers, topic, n, 30*time.Second)
	for i, ev := range evs {
		if ev.Tx != uint64(i+1) {
			t.Fatalf("record %d has tx %d; want %d (no duplicate, no reorder)", i, ev.Tx, i+1)
		}
	}
	testenv.Eventually(t, 20*time.Second, "published rows deleted after retention", func() bool {
		var left int64
		db.Raw(`SELECT count(*) FROM outbox`).Scan(&left)
		return left == 0
	})
	status, err := st.Outbox(ctx)
	if err != nil || status.PublishedTx != n || status.Backlog != 0 {
		t.Errorf("outbox status = %+v, %v", status, err)
	}
}

// setupRelay gives a test its own database (migrated, closed at cleanup)
// and its own cp.changes topic, compacted, with topicConfig.
func setupRelay(t *testing.T, log *slog.Logger, topicConfig map[string]string) (dsn string, brokers []string, topic string, db *gorm.DB, st *store.Store) {
	t.Helper()
	ctx := t.Context()
	dsn = testenv.Database(t)
	brokers = testenv.Kafka(t)
	topic = testenv.TopicPrefix(t) + wire.TopicChanges
	if err := broker.EnsureTopics(ctx, brokers, 30*time.Second, broker.Compacted(topic, topicConfig)); err != nil {
		t.Fatal(err)
	}
	db = testenv.OpenDatabase(t, dsn, log)
	return dsn, brokers, topic, db, store.New(db, entity.Types)
}

// insertN commits n entities of type typ, one transaction each, the i-th
// with the fields of fields(i), a new id and created_at = updated_at = i.
func insertN(t *testing.T, st *store.Store, typ *entity.Type, n int, fields func(i int) map[string]any) {
	t.Helper()
	ctx := t.Context()
	for i := range n {
		_, err := st.Write(ctx, func(tx *store.Tx) error {
			e, errs := entity.Normalize(typ, fields(i), nil,
				map[string]any{"id": uuid.NewString(), "created_at": int64(i), "updated_at": int64(i)})
			if errs != nil {
				return errs
			}
			_, err := tx.Insert(ctx, typ, e)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// signalHandler closes failed on the first "publish failed" log record.
type signalHandler struct {
	slog.Handler
	once   *sync.Once
	failed chan struct{}
}

func (h signalHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "publish failed") {
		h.once.Do(func() { close(h.failed) })
	}
	return nil
}

func (h signalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return signalHandler{Handler: h.Handler.WithAttrs(as), once: h.once, failed: h.failed}
}

// TestRelayNeverPublishesLaterTransactionsFirst relays a drain of about
// 1.3 MB (500 rows of one transaction each, more than one produce request)
// to a topic whose max.message.bytes (600,000) refuses a 1 MiB request but
// accepts a smaller one: the broker fails the first part of the drain and
// accepts the rest, every time, until the limit is raised. cp.changes must
// never hold a record of transaction N+k before the first record of N.
func TestRelayNeverPublishesLaterTransactionsFirst(t *testing.T) {
	ctx := t.Context()
	failed := make(chan struct{})
	log := slog.New(signalHandler{Handler: slog.NewTextHandler(io.Discard, nil), once: &sync.Once{}, failed: failed})
	dsn, brokers, topic, db, st := setupRelay(t, log, map[string]string{"max.message.bytes": "600000"})
	const n = 500
	insertN(t, st, entity.Consumer, n, func(i int) map[string]any {
		return map[string]any{"username": fmt.Sprintf("u%d", i), "custom_id": fmt.Sprintf("%d-%s", i, strings.Repeat("c", 2500))}
	})
	rctx, cancel := context.WithCancel(context.Background())
	r := outbox.New(outbox.Config{DSN: dsn, Brokers: brokers, Topic: topic, Retention: time.Hour, Tick: 200 * time.Millisecond}, db, log)
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(rctx) }()
	defer func() { cancel(); <-done }()

	// The broker refused part of the drain; then it accepts everything.
	select {
	case <-failed:
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	_, err := broker.Client(brokers).IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{
		Resources: []kafka.IncrementalAlterConfigsRequestResource{{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic,
			Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: "max.message.bytes", Value: strconv.Itoa(wire.BrokerMaxMessageBytes), ConfigOperation: kafka.ConfigOperationSet}}}}})
	if err != nil {
		t.Fatal(err)
	}

	rd := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 200 * time.Millisecond})
	defer rd.Close()
	rctx2, cancel2 := context.WithTimeout(ctx, 60*time.Second)
	defer cancel2()
	seen := map[uint64]bool{}
	next := uint64(1) // the lowest transaction not seen yet
	for records := 0; len(seen) < n; records++ {
		m, err := rd.ReadMessage(rctx2)
		if err != nil {
			t.Fatalf("read %s: %d of %d transactions after %d records: %v", topic, len(seen), n, records, err)
		}
		ev, err := wire.DecodeChange(m.Key, m.Value)
		if err != nil {
			t.Fatalf("%s@%d: %v", topic, m.Offset, err)
		}
		if ev.Tx > next {
			t.Fatalf("record %d (offset %d) has tx %d before any record of tx %d", records, m.Offset, ev.Tx, next)
		}
		seen[ev.Tx] = true
		for seen[next] {
			next++
		}
	}
}

// TestRelayKilledAnywhereLeavesNoGapNoDuplicate: transactions numbered by
// their writers wait, unpublished, with no relay running (as after a relay
// killed between numbering and publishing); three more committed without a
// number (their writer died after COMMIT). A relay numbers those, starts
// publishing and is killed after its first records; a second relay takes
// over. cp.changes must hold every number 1..n once as a transaction
// (redeliveries repeat the same records), none ahead of a missing one, and
// the dead writers' transactions numbered in the order of their keys.
func TestRelayKilledAnywhereLeavesNoGapNoDuplicate(t *testing.T) {
	ctx := t.Context()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dsn, brokers, topic, db, st := setupRelay(t, log, nil)
	const numbered, orphans = 20, 3
	insertN(t, st, entity.Service, numbered, func(i int) map[string]any { return map[string]any{"host": "h.internal"} })
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	var orphanIDs []int64
	for i := range orphans {
		conn, err := sqlDB.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = conn.Raw(func(dc any) error {
			b := &pgx.Batch{}
			b.Queue(`BEGIN`)
			outbox.QueueAppend(b, uuid.NewString(), []outbox.Change{{Op: wire.OpDelete, Type: "services", ID: fmt.Sprintf("00000000-0000-0000-0000-%012d", i)}})
			b.Queue(`COMMIT`)
			br := dc.(*stdlib.Conn).Conn().SendBatch(ctx, b)
			defer br.Close()
			if _, err := br.Exec(); err != nil {
				return err
			}
			first, _, err := outbox.ScanAppend(br.QueryRow())
			orphanIDs = append(orphanIDs, first)
			if err != nil {
				return err
			}
			_, err = br.Exec()
			return err
		})
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	const n = numbered + orphans

	relay := func() (stop func()) {
		rctx, cancel := context.WithCancel(context.Background())
		r := outbox.New(outbox.Config{DSN: dsn, Brokers: brokers, Topic: topic, Retention: time.Hour,
			Tick: 200 * time.Millisecond, Batch: 4}, db, log)
		done := make(chan struct{})
		go func() { defer close(done); _ = r.Run(rctx) }()
		return func() { cancel(); <-done }
	}
	stopA := relay()
	testenv.ReadChanges(t, ctx, brokers, topic, 1, 30*time.Second)
	stopA() // killed mid-way (wherever it was)
	stopB := relay()
	defer stopB()

	rd := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 200 * time.Millisecond})
	defer rd.Close()
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	seen := map[uint64]wire.ChangeEvent{}
	var next uint64 = 1 // the lowest number not seen yet
	for len(seen) < n {
		m, err := rd.ReadMessage(rctx)
		if err != nil {
			t.Fatalf("read %s: %d of %d transactions: %v", topic, len(seen), n, err)
		}
		ev, err := wire.DecodeChange(m.Key, m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Tx < 1 || ev.Tx > n || ev.Tx > next {
			t.Fatalf("offset %d has tx %d; the lowest number not seen yet is %d (%d numbers)", m.Offset, ev.Tx, next, n)
		}
		if prev, ok := seen[ev.Tx]; ok && (prev.ID != ev.ID || prev.Op != ev.Op || string(prev.Entity) != string(ev.Entity)) {
			t.Fatalf("tx %d published as two transactions: %s %s and %s %s", ev.Tx, prev.Op, prev.ID, ev.Op, ev.ID)
		}
		seen[ev.Tx] = ev
		for _, ok := seen[next]; ok; _, ok = seen[next] {
			next++
		}
	}
	for i, id := range orphanIDs {
		var tx uint64
		db.Raw(`SELECT tx FROM outbox WHERE id = ?`, id).Scan(&tx)
		if tx != uint64(numbered+1+i) {
			t.Errorf("orphan %d numbered %d, want %d (in key order after the others)", i, tx, numbered+1+i)
		}
	}
}
