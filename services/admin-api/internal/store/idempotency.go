package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"

	"gorm.io/gorm"
)

// Idempotency is the record of a keyed write, stored with the write.
type Idempotency struct {
	Key         string
	RequestHash string
	Status      int
	Response    []byte
}

// Idempotent records the response of a keyed write; it commits with it.
func (tx *Tx) Idempotent(i Idempotency) { tx.idem = &i }

// ClaimIdempotency serializes the writes that carry the same key (a
// transaction-scoped advisory lock) and returns the record a previous
// write with it committed, or nil.
func (tx *Tx) ClaimIdempotency(ctx context.Context, key string) (*Idempotency, error) {
	if err := tx.db.WithContext(ctx).Exec(`SELECT pg_advisory_xact_lock(hashtextextended(?, 7))`, key).Error; err != nil {
		return nil, translate("idempotency_keys", err)
	}
	rec, err := findIdempotency(ctx, tx.db, key)
	if rec != nil && err == nil {
		err = tx.s.durable(ctx)
	}
	return rec, err
}

// FindIdempotency returns the stored response of a key, or nil.
func (s *Store) FindIdempotency(ctx context.Context, key string) (*Idempotency, error) {
	rec, err := findIdempotency(ctx, s.db, key)
	if rec != nil && err == nil {
		err = s.durable(ctx)
	}
	return rec, err
}

// durable returns once every transaction visible now is durable: the
// record of a keyed write may be visible before its write is (see Write),
// and a replay answers for it. A synchronous commit (of a transaction
// with an id and nothing else) flushes the WAL up to its commit record,
// which follows theirs.
func (s *Store) durable(ctx context.Context) error {
	if err := s.db.WithContext(ctx).Exec(`SELECT pg_current_xact_id()`).Error; err != nil {
		return translate("idempotency_keys", err)
	}
	return nil
}

func findIdempotency(ctx context.Context, db *gorm.DB, key string) (*Idempotency, error) {
	var rows []Idempotency
	err := db.WithContext(ctx).Raw(`SELECT key, request_hash, status, response FROM idempotency_keys WHERE key = ?`, key).Scan(&rows).Error
	if err != nil {
		return nil, translate("idempotency_keys", err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return &rows[0], nil
}

// HashRequest is the request fingerprint stored with an idempotency key.
func HashRequest(method, path string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(method + " " + path + "\n"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

// insertOp stores the record; it rides in the commit's round trip.
func (i *Idempotency) insertOp() op {
	return op{table: "idempotency_keys", sql: `INSERT INTO idempotency_keys (key, request_hash, status, response) VALUES ($1, $2, $3, $4)`,
		args: []any{i.Key, i.RequestHash, i.Status, i.Response}}
}

// ExpireIdempotency deletes the records of keyed writes older than
// retention (0: they are kept for ever) at once and then every interval,
// until ctx ends. Replicas may all run it.
func (s *Store) ExpireIdempotency(ctx context.Context, retention, every time.Duration, log *slog.Logger) {
	if retention <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		res := s.db.WithContext(ctx).Exec(`DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => ?)`, retention.Seconds())
		if res.Error != nil && ctx.Err() == nil {
			log.Warn("expire idempotency keys", "err", res.Error)
		} else if res.RowsAffected > 0 {
			log.Debug("expired idempotency keys", "rows", res.RowsAffected)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
