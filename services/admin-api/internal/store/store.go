// Package store keeps admin-api's entities in Postgres and writes, in the
// same transaction, one outbox row per changed entity (the rows' SQL is the
// outbox package's). Postgres errors are translated here (errors.go).
//
// Files: commit.go (Write: one transaction, its commit in one round trip,
// the outcome of a lost COMMIT), tx.go (a transaction's deferred
// statements), pipeline.go (statements sent in one round trip),
// entities.go (Insert, Update, Delete with cascades, reference lists),
// bulk.go (the many-row writes of a configuration replace), read.go (Get,
// List, All), idempotency.go (Idempotency-Key records and their expiry).
package store

import (
	"context"
	"fmt"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/outbox"
	"gorm.io/gorm"
)

// Store is the Postgres store of entities and outbox.
type Store struct {
	db      *gorm.DB
	types   []*entity.Type
	numbers *outbox.Numberer
}

// New returns a store over db for the given entity types.
func New(db *gorm.DB, types []*entity.Type) *Store {
	sqlDB, err := db.DB()
	if err != nil {
		panic(fmt.Sprintf("store: gorm without a database/sql pool: %v", err)) // gorm.Open over a DSN always has one
	}
	return &Store{db: db, types: types, numbers: outbox.NewNumberer(sqlDB, NumberFor)}
}

// Result of a committed transaction.
type Result struct {
	Tx      uint64 // its number; 0 when nothing changed
	Changes int
}

// Ping checks that Postgres answers.
func (s *Store) Ping(ctx context.Context) error {
	sqlDB, err := s.db.DB()
	if err != nil {
		return err
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

// Outbox reports the outbox backlog and the last published transaction.
func (s *Store) Outbox(ctx context.Context) (outbox.Status, error) {
	st, err := outbox.ReadStatus(ctx, s.db)
	if err != nil {
		return st, translate("outbox", err)
	}
	return st, nil
}
