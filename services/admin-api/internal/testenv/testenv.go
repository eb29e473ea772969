// Package testenv gives integration tests their own Postgres database and
// Kafka topic prefix on the real shared servers, named from
// DELTAPLANE_TEST_POSTGRES and DELTAPLANE_TEST_KAFKA.
package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/database"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"gorm.io/gorm"
)

// Postgres returns the admin DSN (DELTAPLANE_TEST_POSTGRES).
func Postgres(t testing.TB) string { t.Helper(); return testsupport.Postgres(t) }

// Kafka returns the broker list (DELTAPLANE_TEST_KAFKA).
func Kafka(t testing.TB) []string { t.Helper(); return testsupport.Kafka(t) }

// Random returns n random hex bytes.
func Random(n int) string { return testsupport.Random(n) }

// Name is a unique lower-case name for a test's resources.
func Name(t testing.TB) string { return testsupport.Name(t) }

// Database creates a fresh database for the test, dropped at cleanup, and
// returns its DSN.
func Database(t testing.TB) string {
	t.Helper()
	admin := Postgres(t)
	name := "dp_" + Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("connect %s: %v", admin, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// OpenDatabase opens dsn, closed when the test ends, and migrates it.
func OpenDatabase(t testing.TB, dsn string, log *slog.Logger) *gorm.DB {
	t.Helper()
	db, err := database.Open(t.Context(), dsn, 30*time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, _ := db.DB()
	t.Cleanup(func() { sqlDB.Close() })
	if err := database.Migrate(t.Context(), db, log); err != nil {
		t.Fatal(err)
	}
	return db
}

// TopicPrefix is a unique prefix for the test's topics; the topics with
// it are deleted when the test ends.
func TopicPrefix(t testing.TB) string {
	prefix := "t-" + strings.ReplaceAll(Name(t), "_", "-") + "."
	brokers := os.Getenv("DELTAPLANE_TEST_KAFKA")
	t.Cleanup(func() {
		if brokers == "" {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c := broker.Client(broker.Brokers(brokers))
		md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
		if err != nil {
			t.Logf("list topics: %v", err)
			return
		}
		var mine []string
		for _, tp := range md.Topics {
			if strings.HasPrefix(tp.Name, prefix) {
				mine = append(mine, tp.Name)
			}
		}
		if len(mine) == 0 {
			return
		}
		resp, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: mine})
		if err != nil {
			t.Logf("delete topics %v: %v", mine, err)
			return
		}
		for name, err := range resp.Errors {
			if err != nil {
				t.Logf("delete topic %s: %v", name, err)
			}
		}
	})
	return prefix
}

// Send sends one request to url, with the headers given as name, value
// pairs (a pair with an empty value is left out), and returns the reply's
// status and body.
func Send(t testing.TB, method, url, body string, header ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] != "" {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ReadChanges reads n change events from the start of topic.
func ReadChanges(t testing.TB, ctx context.Context, brokers []string, topic string, n int, within time.Duration) []wire.ChangeEvent {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(kafka.FirstOffset); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var out []wire.ChangeEvent
	for len(out) < n {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %s after %d of %d events: %v", topic, len(out), n, err)
		}
		ev, err := wire.DecodeChange(m.Key, m.Value)
		if err != nil {
			t.Fatalf("%s@%d: %v", topic, m.Offset, err)
		}
		out = append(out, ev)
	}
	return out
}

// Dedupe drops redelivered events (the relay publishes at least once),
// keeping the first of each (tx, index).
func Dedupe(evs []wire.ChangeEvent) []wire.ChangeEvent {
	seen := map[string]bool{}
	var out []wire.ChangeEvent
	for _, e := range evs {
		k := fmt.Sprint(e.Tx, "/", e.Index)
		if !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}

// Entity decodes an event's entity.
func Entity(t testing.TB, ev wire.ChangeEvent) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(ev.Entity, &m); err != nil {
		t.Fatalf("entity of %s: %v", wire.Key(ev.Type, ev.ID), err)
	}
	return m
}
