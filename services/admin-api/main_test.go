//go:build integration

package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
)

func TestRunServesAndRelays(t *testing.T) {
	dsn := testenv.Database(t)
	brokers := testenv.Kafka(t)
	prefix := testenv.TopicPrefix(t)
	addr := testsupport.FreeAddr(t)
	env := map[string]string{
		"ADMIN_LISTEN": addr, "DATABASE_URL": dsn, "KAFKA_BROKERS": strings.Join(brokers, ","),
		"TOPIC_PREFIX": prefix, "ADMIN_TOKEN": "s3cret", "LOG_LEVEL": "debug", "OUTBOX_POLL_INTERVAL": "1s",
	}
	ctx, cancel := context.WithCancel(t.Context())
	var logs testsupport.LogBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, func(k string) string { return env[k] }, &logs) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	base := "http://" + addr
	waitHealthy(t, base)

	do := func(method, path, body, token string) (int, []byte) {
		return testenv.Send(t, method, base+path, body, "Kong-Admin-Token", token)
	}
	if code, b := do("POST", "/services", `{"name":"x","host":"x.internal"}`, ""); code != 401 || !strings.Contains(string(b), "message") {
		t.Fatalf("unauthenticated POST = %d %s", code, b)
	}
	if code, b := do("POST", "/services", `{"name":"x","host":"x.internal"}`, "wrong"); code != 401 {
		t.Fatalf("wrong token POST = %d %s", code, b)
	}
	code, b := do("POST", "/services", `{"name":"x","host":"x.internal"}`, "s3cret")
	if code != 201 {
		t.Fatalf("POST = %d %s", code, b)
	}
	var svc map[string]any
	_ = json.Unmarshal(b, &svc)
	big := `{"name":"` + strings.Repeat("a", 2<<20) + `","host":"h"}`
	if code, b := do("POST", "/services", big, "s3cret"); code != 413 || !strings.Contains(string(b), "message") {
		t.Fatalf("oversized POST = %d %s", code, b)
	}
	if code, b := do("GET", "/clustering/data-planes", "", "s3cret"); code != 200 || !strings.Contains(string(b), `"data":[]`) {
		t.Fatalf("GET /clustering/data-planes = %d %s", code, b)
	}
	if code, b := do("GET", "/", "", "s3cret"); code != 200 || !strings.Contains(string(b), `"version"`) {
		t.Fatalf("GET / = %d %s", code, b)
	}

	evs := testenv.ReadChanges(t, t.Context(), brokers, prefix+wire.TopicChanges, 1, 30*time.Second)
	if evs[0].Tx != 1 || evs[0].ID != svc["id"] || evs[0].Op != wire.OpUpsert {
		t.Fatalf("event = %+v", evs[0])
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not stop")
	}
	done <- nil // for the cleanup
	if !strings.Contains(logs.String(), `"admin_token":"xxxxx"`) || strings.Contains(logs.String(), "s3cret") {
		t.Error("the token must be logged masked")
	}
}

// waitHealthy waits until the admin-api at base answers GET /health with 200.
func waitHealthy(t *testing.T, base string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, "admin-api "+base+"/health", func() bool {
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

func TestRunRefusesMismatchedTopic(t *testing.T) {
	dsn := testenv.Database(t)
	brokers := testenv.Kafka(t)
	prefix := testenv.TopicPrefix(t)
	// cp.changes exists with cleanup.policy=delete: admin-api must refuse.
	if err := broker.EnsureTopics(t.Context(), brokers, 30*time.Second, broker.Log(prefix+wire.TopicChanges)); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ADMIN_LISTEN": testsupport.FreeAddr(t), "DATABASE_URL": dsn, "KAFKA_BROKERS": strings.Join(brokers, ","), "TOPIC_PREFIX": prefix}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := run(ctx, func(k string) string { return env[k] }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "refusing to run") || !errors.Is(err, broker.ErrTopicMismatch) {
		t.Fatalf("run = %v, want a refusal", err)
	}
}

// TestRunRefusesUnderReplicatedTopic: cp.changes has one copy and admin-api
// is configured to require two; it refuses, naming both numbers.
func TestRunRefusesUnderReplicatedTopic(t *testing.T) {
	dsn := testenv.Database(t)
	brokers := testenv.Kafka(t)
	prefix := testenv.TopicPrefix(t)
	if err := broker.EnsureTopics(t.Context(), brokers, 30*time.Second, broker.Compacted(prefix+wire.TopicChanges, nil)); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"ADMIN_LISTEN": testsupport.FreeAddr(t), "DATABASE_URL": dsn, "KAFKA_BROKERS": strings.Join(brokers, ","), "TOPIC_PREFIX": prefix,
		"KAFKA_REPLICATION_FACTOR": "4"}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := run(ctx, func(k string) string { return env[k] }, io.Discard)
	if !errors.Is(err, broker.ErrTopicMismatch) || !strings.Contains(err.Error(), "configured to require 4") {
		t.Fatalf("run = %v, want a refusal naming the replication factor", err)
	}
}

// TestWritesQueueWhileKafkaIsAway starts admin-api against a broker
// address where nothing listens: it still accepts writes, which wait in
// the outbox; a second replica that reaches Kafka publishes them in order.
func TestWritesQueueWhileKafkaIsAway(t *testing.T) {
	dsn := testenv.Database(t)
	brokers := testenv.Kafka(t)
	prefix := testenv.TopicPrefix(t)
	start := func(kafkaAddr string) (string, func()) {
		addr := testsupport.FreeAddr(t)
		env := map[string]string{"ADMIN_LISTEN": addr, "DATABASE_URL": dsn, "KAFKA_BROKERS": kafkaAddr, "TOPIC_PREFIX": prefix, "OUTBOX_POLL_INTERVAL": "500ms"}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- run(ctx, func(k string) string { return env[k] }, io.Discard) }()
		base := "http://" + addr
		waitHealthy(t, base)
		return base, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}
	away, stopAway := start(testsupport.FreeAddr(t)) // nothing listens there
	defer stopAway()
	const n = 5
	for i := range n {
		resp, err := http.Post(away+"/services", "application/json", strings.NewReader(`{"name":"q`+string(rune('a'+i))+`","host":"q.internal"}`))
		if err != nil || resp.StatusCode != 201 {
			t.Fatalf("write %d while Kafka is away: %v %v", i, resp, err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(away + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Outbox struct {
			Backlog     int64  `json:"backlog"`
			PublishedTx uint64 `json:"last_published_tx"`
		} `json:"outbox"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if st.Outbox.Backlog != n || st.Outbox.PublishedTx != 0 {
		t.Fatalf("status while Kafka is away = %+v, want backlog %d", st.Outbox, n)
	}
	_, stopOK := start(strings.Join(brokers, ","))
	defer stopOK()
	evs := testenv.ReadChanges(t, t.Context(), brokers, prefix+wire.TopicChanges, n, 60*time.Second)
	for i, ev := range evs {
		if ev.Tx != uint64(i+1) {
			t.Fatalf("event %d has tx %d", i, ev.Tx)
		}
	}
}
