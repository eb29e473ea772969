// Package outbox relays committed outbox rows to cp.changes: one leader at a
// time across admin-api replicas, in commit order, at least once.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"gorm.io/gorm"
)

// leaderLock is the pg advisory lock key held by the publishing relay.
const leaderLock = 0x64706f7574 // "dpout"

// Config of a Relay.
type Config struct {
	DSN       string        // Postgres DSN for the dedicated leader connection
	Brokers   []string      // Kafka bootstrap brokers
	Topic     string        // prefix + wire.TopicChanges
	Retention time.Duration // published rows older than this are deleted
	Tick      time.Duration // fallback poll when no NOTIFY arrives (default 5s)
	Batch     int           // rows per publish (default 500)
	// IdempotencyRetention is how long Idempotency-Key records are kept
	// (0: for ever); the leader deletes older ones.
	IdempotencyRetention time.Duration
	// CleanEvery is how often published rows past Retention are deleted
	// (default 1m).
	CleanEvery time.Duration
}

// Relay publishes outbox rows.
type Relay struct {
	cfg    Config
	db     *gorm.DB
	writer *kafka.Writer
	log    *slog.Logger
}

// New returns a relay; Run starts it.
func New(cfg Config, db *gorm.DB, log *slog.Logger) *Relay {
	if cfg.Tick <= 0 {
		cfg.Tick = 5 * time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.CleanEvery <= 0 {
		cfg.CleanEvery = time.Minute
	}
	log = log.With("component", "outbox-relay", "topic", cfg.Topic)
	w := &kafka.Writer{
		Addr:                   kafka.TCP(cfg.Brokers...),
		Topic:                  cfg.Topic,
		RequiredAcks:           kafka.RequireAll,
		Async:                  false,
		BatchSize:              cfg.Batch,
		BatchTimeout:           time.Millisecond,
		MaxAttempts:            3,
		WriteTimeout:           10 * time.Second,
		AllowAutoTopicCreation: false,
		ErrorLogger:            kafka.LoggerFunc(func(f string, a ...any) { log.Warn(fmt.Sprintf(f, a...)) }),
	}
	return &Relay{cfg: cfg, db: db, writer: w, log: log}
}

// Run leads or waits for leadership until ctx ends. It returns nil on
// cancellation.
func (r *Relay) Run(ctx context.Context) error {
	defer r.writer.Close()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 200 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0
	for {
		err := r.lead(ctx)
		if ctx.Err() != nil {
			return nil
		}
		d := b.NextBackOff()
		r.log.Warn("relay stopped; retrying", "err", err, "retry_in", d)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
}

// lead takes the leader lock on a dedicated connection and publishes until
// the connection or ctx ends.
func (r *Relay) lead(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, r.cfg.DSN)
	if err != nil {
		return fmt.Errorf("relay connect: %w", err)
	}
	defer conn.Close(context.Background())
	for {
		var ok bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, leaderLock).Scan(&ok); err != nil {
			return fmt.Errorf("relay leader lock: %w", err)
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	if _, err := conn.Exec(ctx, `LISTEN outbox`); err != nil {
		return fmt.Errorf("relay listen: %w", err)
	}
	r.log.Info("relay is leader")
	lastClean := time.Time{}
	for {
		if err := r.drain(ctx, conn); err != nil {
			return err
		}
		if time.Since(lastClean) > r.cfg.CleanEvery {
			if err := r.clean(ctx); err != nil {
				r.log.Warn("outbox cleanup failed", "err", err)
			}
			lastClean = time.Now()
		}
		wctx, cancel := context.WithTimeout(ctx, r.cfg.Tick)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("relay wait: %w", err)
		}
		if err != nil && conn.IsClosed() {
			return errors.New("relay connection closed")
		}
	}
}

type row struct {
	ID       int64
	Tx       uint64
	Idx      int
	Cnt      int
	Key      string
	Op       string
	Type     string
	EntityID string
	Entity   []byte
}

// drain publishes every unpublished row in (tx, idx) order.
func (r *Relay) drain(ctx context.Context, leader *pgx.Conn) error {
	for {
		var rows []row
		err := r.db.WithContext(ctx).Raw(`SELECT id, tx, idx, cnt, key, op, type, entity_id, entity
			FROM outbox WHERE published_at IS NULL AND tx > 0 ORDER BY tx, idx LIMIT ?`, r.cfg.Batch).Scan(&rows).Error
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		if len(rows) == 0 {
			return nil
		}
		// Still the leader? A lost connection means the lock is gone.
		if err := leader.Ping(ctx); err != nil {
			return fmt.Errorf("relay leader connection: %w", err)
		}
		msgs := make([]kafka.Message, len(rows))
		ids := make([]int64, len(rows))
		for i, rw := range rows {
			ev := wire.ChangeEvent{Schema: wire.SchemaVersion, Tx: rw.Tx, Index: rw.Idx, Count: rw.Cnt,
				Op: wire.Op(rw.Op), Type: rw.Type, ID: rw.EntityID}
			if len(rw.Entity) > 0 {
				ev.Entity = json.RawMessage(rw.Entity)
			}
			v, err := json.Marshal(ev)
			if err != nil {
				return fmt.Errorf("encode outbox row %d: %w", rw.ID, err)
			}
			msgs[i] = kafka.Message{Key: []byte(rw.Key), Value: v}
			ids[i] = rw.ID
		}
		if err := r.publish(ctx, msgs); err != nil {
			return err
		}
		last := rows[len(rows)-1].Tx
		err = r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec(`UPDATE outbox SET published_at = now() WHERE id IN ?`, ids).Error; err != nil {
				return err
			}
			return tx.Exec(`UPDATE relay_state SET published_tx = GREATEST(published_tx, ?), published_at = now()`, last).Error
		})
		if err != nil {
			return fmt.Errorf("mark outbox published: %w", err)
		}
		r.log.Debug("published", "rows", len(rows), "tx", last)
	}
}

// publish writes msgs with backoff until Kafka accepts them or ctx ends:
// a row is never dropped or skipped.
func (r *Relay) publish(ctx context.Context, msgs []kafka.Message) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 5 * time.Second
	b.MaxElapsedTime = 0
	return backoff.RetryNotify(func() error {
		return r.writer.WriteMessages(ctx, msgs...)
	}, backoff.WithContext(b, ctx), func(err error, d time.Duration) {
		r.log.Warn("publish failed; retrying", "err", err, "retry_in", d)
	})
}

func (r *Relay) clean(ctx context.Context) error {
	if r.cfg.IdempotencyRetention > 0 {
		res := r.db.WithContext(ctx).Exec(`DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => ?)`,
			r.cfg.IdempotencyRetention.Seconds())
		if res.Error != nil {
			return res.Error
		}
	}
	if r.cfg.Retention <= 0 {
		return nil
	}
	res := r.db.WithContext(ctx).Exec(`DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < now() - make_interval(secs => ?)`,
		r.cfg.Retention.Seconds())
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected > 0 {
		r.log.Info("deleted published outbox rows", "rows", res.RowsAffected)
	}
	return nil
}
