//go:build integration

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// finalOf is the entity table the change records give when applied in
// order (every record here is an upsert or a delete).
func finalOf(t *testing.T, msgs []kafka.Message) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range msgs {
		var ev wire.ChangeEvent
		if err := json.Unmarshal(m.Value, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Op == wire.OpDelete {
			delete(out, string(m.Key))
		} else {
			out[string(m.Key)] = string(ev.Entity)
		}
	}
	return out
}

func sameTable(t *testing.T, got map[string][]byte, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if string(got[k]) != v {
			t.Errorf("%s: dp.deltas has %q, want %q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: on dp.deltas, not in the expected table", k)
		}
	}
}

func metricsText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Issue 9, defect 1(b): a relay whose produce requests were reordered put
// later transactions on cp.changes before earlier ones, then retried them
// all (cp.changes reads tx 3..5, 3..5, 1..5, the first copy starting inside
// tx 3). The sync-gateway holds at the jump, says so on /status, /metrics
// and in the log, and publishes exactly the in-order result.
func TestReorderedChangesAreSequencedInOrder(t *testing.T) {
	e := newEnv(t)
	g := e.start(nil)
	inOrder := []kafka.Message{
		upsert(1, 0, 1, wire.TypeService, "s1"),
		upsert(2, 0, 2, wire.TypeService, "s2"),
		change(2, 1, 2, wire.OpUpsert, wire.TypeRoute, "r2", `{"id":"r2","service":{"id":"s2"}}`),
		change(3, 0, 2, wire.OpUpsert, wire.TypeService, "s1", `{"id":"s1","name":"n-s1","tx":3}`),
		change(3, 1, 2, wire.OpDelete, wire.TypeRoute, "r2", ""),
		upsert(4, 0, 1, wire.TypeService, "s4"),
		upsert(5, 0, 3, wire.TypeService, "s5"),
		upsert(5, 1, 3, wire.TypeService, "s6"),
		change(5, 2, 3, wire.OpUpsert, wire.TypeRoute, "r5", `{"id":"r5","service":{"id":"s5"}}`),
	}
	// The request that landed first starts with the second event of tx 3.
	e.produce(inOrder[4:]...)
	testsupport.Eventually(t, 30*time.Second, func() error {
		s, err := g.status()
		if err != nil {
			return err
		}
		if s.Version > 0 {
			t.Fatalf("published version %d (tx %d) before tx 1 arrived", s.Version, s.LastTx)
		}
		if s.WaitingForTx != 1 {
			return fmt.Errorf("status %+v, want waiting_for_tx 1", s)
		}
		return nil
	})
	if m := metricsText(t, g.addr); !strings.Contains(m, "deltaplane_sync_waiting_for_tx 1\n") {
		t.Fatalf("/metrics lacks deltaplane_sync_waiting_for_tx 1")
	}
	e.produce(inOrder[4:]...) // the relay's retry of that request
	e.produce(inOrder...)     // and of the one that failed
	testsupport.Eventually(t, 30*time.Second, func() error {
		s, err := g.status()
		if err == nil && (s.LastTx != 5 || s.WaitingForTx != 0) {
			err = fmt.Errorf("status %+v, want last tx 5, waiting for none", s)
		}
		return err
	})
	ds := e.deltas()
	h := checkHistory(t, ds)
	if h.Versions != 5 || len(ds) != len(inOrder) {
		t.Fatalf("versions %d records %d, want 5 and %d", h.Versions, len(ds), len(inOrder))
	}
	for v := uint64(1); v <= 5; v++ {
		if h.Tx[v] != v {
			t.Fatalf("version %d came from tx %d", v, h.Tx[v])
		}
	}
	sameTable(t, h.Final, finalOf(t, inOrder))
	if n := strings.Count(g.logs.String(), `"msg":"waiting for a missing transaction"`); n != 1 {
		t.Fatalf("logged the wait %d times, want once", n)
	}
	if s, _ := g.status(); s.Quarantined != 0 {
		t.Fatalf("quarantined %d", s.Quarantined)
	}
}

// firstRecord returns the topic's first record.
func (e *env) firstRecord(topic string) kafka.Message {
	e.t.Helper()
	return e.readAll(topic)[0]
}

// Issue 9, defect 3: cp.changes is compacted. Service created (tx 1),
// route created on it (tx 2), service updated (tx 3); compaction removes
// tx 1. A sync-gateway with a fresh group and an empty dp.deltas reads
// cp.changes from the start and must arrive at Postgres' table: the route
// and the updated service, nothing quarantined.
func TestFreshGatewayOnCompactedChanges(t *testing.T) {
	e := newEnv(t)
	changes := e.prefix + wire.TopicChanges
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	resp, err := e.client.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: changes,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{
			{Name: "segment.ms", Value: "100", ConfigOperation: kafka.ConfigOperationSet},
			{Name: "min.cleanable.dirty.ratio", Value: "0.01", ConfigOperation: kafka.ConfigOperationSet},
		},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Resources {
		if r.Error != nil {
			t.Fatal(r.Error)
		}
	}
	written := []kafka.Message{
		change(1, 0, 1, wire.OpUpsert, wire.TypeService, "s", `{"id":"s","host":"h1"}`),
		change(2, 0, 1, wire.OpUpsert, wire.TypeRoute, "r", `{"id":"r","service":{"id":"s"}}`),
		change(3, 0, 1, wire.OpUpsert, wire.TypeService, "s", `{"id":"s","host":"h3"}`),
	}
	for _, m := range written {
		e.produce(m)
	}
	// Later writes of one other key roll segments until the cleaner has
	// removed tx 1 (the record at offset 0).
	tx := uint64(3)
	testsupport.Eventually(t, 90*time.Second, func() error {
		if m := e.firstRecord(changes); m.Offset > 0 {
			return nil
		}
		tx++
		m := upsert(tx, 0, 1, wire.TypeService, "filler")
		written = append(written, m)
		e.produce(m)
		return fmt.Errorf("offset 0 (tx 1) still on %s after tx %d", changes, tx)
	})
	t.Logf("tx 1 compacted away after %d filler transactions", tx-3)

	g := e.start(nil)
	testsupport.Eventually(t, 60*time.Second, func() error {
		s, err := g.status()
		if err == nil && s.LastTx != tx {
			err = fmt.Errorf("status %+v, want last tx %d", s, tx)
		}
		return err
	})
	h := checkHistory(t, e.deltas())
	sameTable(t, h.Final, finalOf(t, written))
	if s, _ := g.status(); s.Quarantined != 0 || s.WaitingForTx != 0 {
		t.Fatalf("status %+v: nothing may be quarantined or awaited", s)
	}
	if dlq := e.readAll(changes + wire.DLQSuffix); len(dlq) != 0 {
		for _, m := range dlq {
			t.Logf("dlq: %s %v", m.Key, m.Headers)
		}
		t.Fatalf("%d records quarantined", len(dlq))
	}
}
