// Package database opens admin-api's Postgres connection with bounded
// backoff and applies the embedded, versioned schema migrations.
package database

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/shared/broker"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the pg advisory lock key that serializes migrations
// across admin-api replicas.
const migrationLock = 0x64706d6967 // "dpmig"

// Open connects to Postgres, retrying for up to maxWait.
func Open(ctx context.Context, dsn string, maxWait time.Duration, log *slog.Logger) (*gorm.DB, error) {
	var db *gorm.DB
	err := broker.Retry(ctx, maxWait, func() error {
		d, err := gorm.Open(postgres.Open(dsn), &gorm.Config{
			Logger: logger.New(slog.NewLogLogger(log.Handler(), slog.LevelWarn), logger.Config{
				SlowThreshold: time.Second, LogLevel: logger.Warn, IgnoreRecordNotFoundError: true,
			}),
			SkipDefaultTransaction: true,
		})
		if err != nil {
			log.Warn("postgres not reachable yet", "err", err)
			return err
		}
		sqlDB, err := d.DB()
		if err != nil {
			return err
		}
		if err := sqlDB.PingContext(ctx); err != nil {
			sqlDB.Close()
			log.Warn("postgres not reachable yet", "err", err)
			return err
		}
		sqlDB.SetMaxOpenConns(20)
		sqlDB.SetMaxIdleConns(10)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
		db = d
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("connect postgres: %w", err)
	}
	return db, nil
}

type migration struct {
	version int
	name    string
	sql     string
}

func load() ([]migration, error) {
	entries, err := fs.ReadDir(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number", e.Name())
		}
		b, err := migrations.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// Migrate applies the pending migrations in order, each in its own
// transaction, under a transaction-scoped advisory lock so that replicas
// starting together apply each one once.
func Migrate(ctx context.Context, db *gorm.DB, log *slog.Logger) error {
	ms, err := load()
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	for _, m := range ms {
		err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec(`SELECT pg_advisory_xact_lock(?)`, migrationLock).Error; err != nil {
				return err
			}
			if err := tx.Exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
				version integer PRIMARY KEY, name text NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now())`).Error; err != nil {
				return err
			}
			var n int64
			if err := tx.Raw(`SELECT count(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n).Error; err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if err := tx.Exec(m.sql).Error; err != nil {
				return err
			}
			log.Info("applied migration", "migration", m.name)
			return tx.Exec(`INSERT INTO schema_migrations (version, name) VALUES (?, ?)`, m.version, m.name).Error
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return nil
}
