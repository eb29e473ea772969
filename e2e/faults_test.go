//go:build e2e

package e2e

// Kafka-level faults from RELIABILITY.md (scenarios 6, 7, 12, 13, 14 and
// 16). Every test runs its own broker (startPrivateKafka), so stopping,
// pausing or killing it disturbs no other test.

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// Scenario 6: the broker is restarted five times, alternately with SIGTERM
// and SIGKILL, while a writer creates, updates and deletes services, routes,
// plugins, consumers and credentials. At quiescence the checker's verdict
// holds (no acknowledged write lost, every data plane equal to Postgres,
// no version decrease, nothing quarantined), dp.deltas is gap-free with
// complete batches, and the acknowledged writes are on it in the order
// they were acknowledged.
func TestKafkaRestartsDuringWrites(t *testing.T) {
	f := startWritesUnderFault(t, "b", 15*time.Millisecond)
	k, s, dps, sv, svStop, c, w, stop, done := f.k, f.s, f.dps, f.sv, f.svStop, f.c, f.w, f.stop, f.done

	faults := []struct {
		name    string
		restart func()
	}{{"SIGTERM", k.restartClean}, {"SIGKILL", k.restartHard}, {"SIGTERM", k.restartClean}, {"SIGKILL", k.restartHard}, {"SIGTERM", k.restartClean}}
	for i, f := range faults {
		before := s.headVersion(t, dps)
		okBefore, start := w.okCount(), time.Now()
		f.restart()
		back := time.Since(start)
		// Changes flow end to end again before the next fault.
		testsupport.Eventually(t, 90*time.Second, s.pipelineMoved(dps, before))
		t.Logf("restart %d (%s): broker back after %s, pipeline moving after %s; %d writes acknowledged meanwhile",
			i+1, f.name, back.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond), w.okCount()-okBefore)
	}
	waitOK(t, w, w.okCount()+10)
	stop()
	<-done
	s.waitHealthy(s.Sync + "/health")
	c.verdict(t, dps, verdictOpts{})

	msgs := readTopic(t, k.Addr, s.Prefix+wire.TopicDeltas)
	sum, err := checkDeltaLog(msgs, true)
	if err != nil {
		t.Errorf("dp.deltas: %v", err)
	}
	if sg := mustDo(t, 200, "GET", s.Sync+"/status", nil); float64(sum.maxVersion) != num(sg, "version") {
		t.Errorf("dp.deltas ends at version %d, sync-gateway says %v", sum.maxVersion, sg["version"])
	}
	if err := inWriteOrder(msgs, c.h.Ops()); err != nil {
		t.Errorf("order: %v", err)
	}
	for _, dp := range dps {
		st := statusDoc(t, dp)
		t.Logf("%s: version %v, duplicates skipped %v, resyncs %v, gaps %v", dp.NodeID, st["version"], st["duplicates_skipped"], st["resyncs"], st["gaps"])
	}
	t.Logf("dp.deltas: %d records, %d versions, %d re-published duplicates", sum.records, sum.versions, sum.duplicates)
	svStop()
	t.Run("no process exits because of the broker", func(t *testing.T) { noExits(t, sv) })
}

// Scenario 7: the broker is paused (SIGSTOP) for 20 s while writes go on.
// admin-api keeps acknowledging (the outbox queues them); after SIGCONT
// everything arrives, in order, and the data planes converge.
func TestKafkaPausedWritesQueueInOutbox(t *testing.T) {
	f := startWritesUnderFault(t, "p", 20*time.Millisecond)
	k, s, dps, sv, svStop, c, w, stop, done := f.k, f.s, f.dps, f.sv, f.svStop, f.c, f.w, f.stop, f.done

	k.signal(syscall.SIGSTOP)
	paused, okAtPause, backlog := time.Now(), w.okCount(), 0
	for time.Since(paused) < 20*time.Second { // the length of the fault, not an assertion
		backlog = max(backlog, s.countRows("outbox WHERE published_at IS NULL"))
		time.Sleep(500 * time.Millisecond)
	}
	okDuring := w.okCount() - okAtPause
	k.signal(syscall.SIGCONT)
	t.Logf("broker paused %s: %d writes acknowledged, outbox backlog up to %d rows", time.Since(paused).Round(100*time.Millisecond), okDuring, backlog)
	if okDuring < 20 {
		t.Fatalf("admin-api acknowledged only %d writes while Kafka was paused", okDuring)
	}
	if backlog == 0 {
		t.Fatal("no unpublished outbox row while Kafka was paused")
	}

	waitOK(t, w, w.okCount()+10)
	stop()
	<-done
	s.waitHealthy(s.Sync + "/health")
	c.verdict(t, dps, verdictOpts{})
	testsupport.Eventually(t, propagation, func() error {
		if n := s.countRows("outbox WHERE published_at IS NULL"); n != 0 {
			return fmt.Errorf("%d outbox rows unpublished", n)
		}
		return nil
	})
	msgs := readTopic(t, k.Addr, s.Prefix+wire.TopicDeltas)
	sum, err := checkDeltaLog(msgs, true)
	if err != nil {
		t.Errorf("dp.deltas: %v", err)
	}
	if err := inWriteOrder(msgs, c.h.Ops()); err != nil {
		t.Errorf("order: %v", err)
	}
	t.Logf("dp.deltas: %d records, %d versions, %d re-published duplicates", sum.records, sum.versions, sum.duplicates)
	svStop()
	t.Run("no process exits because of the broker", func(t *testing.T) { noExits(t, sv) })
}

// Scenario 13: a data plane whose consumer group was deleted (committed
// offset gone) resyncs from the start of dp.deltas, with or without its
// store, and never starts from "latest".
func TestDataplaneGroupDeletedResyncsFromStart(t *testing.T) {
	k := startPrivateKafka(t)
	s := newSystem(t)
	dp := s.startDataplane("dp1")
	c := s.checked(dp)
	up := upstream(t)
	echo := c.must(t, 201, "POST", "/services", map[string]any{"name": "echo", "url": up.URL})["id"].(string)
	addRoutes := func(from, to int) {
		for i := from; i < to; i++ {
			c.must(t, 201, "POST", "/services/"+echo+"/routes", map[string]any{"name": "g" + strconv.Itoa(i), "paths": []string{"/g" + strconv.Itoa(i)}})
		}
	}
	allRoute := func(n int) {
		t.Helper()
		for i := range n {
			if err := routesTo(dp, fmt.Sprintf("/g%d/x", i), "/x")(); err != nil {
				t.Fatal(err)
			}
		}
	}
	addRoutes(0, 10)
	testsupport.Eventually(t, propagation, routesTo(dp, "/g9/x", "/x"))

	client := broker.Client([]string{k.Addr})
	group, topic := "deltaplane-dp-"+dp.NodeID, s.Prefix+wire.TopicDeltas
	committed := func() int64 {
		t.Helper()
		resp, err := client.OffsetFetch(t.Context(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0}}})
		if err != nil || resp.Error != nil {
			t.Fatalf("offset fetch %s: %v %v", group, err, resp.Error)
		}
		for _, p := range resp.Topics[topic] {
			if p.Partition == 0 {
				return p.CommittedOffset
			}
		}
		return -1
	}
	deleteGroup := func() {
		t.Helper()
		testsupport.Eventually(t, 30*time.Second, func() error {
			resp, err := client.DeleteGroups(t.Context(), &kafka.DeleteGroupsRequest{GroupIDs: []string{group}})
			if err != nil {
				return err
			}
			return resp.Errors[group]
		})
		if c := committed(); c != -1 {
			t.Fatalf("group %s still has committed offset %d after deletion", group, c)
		}
	}
	end := highWaterMark(t, k.Addr, topic)
	testsupport.Eventually(t, propagation, func() error {
		if c := committed(); c != end {
			return fmt.Errorf("group %s committed %d, dp.deltas ends at %d", group, c, end)
		}
		return nil
	})

	t.Run("group deleted, store kept", func(t *testing.T) {
		dp.Stop(syscall.SIGTERM)
		deleteGroup()
		addRoutes(10, 15) // changes while it is down
		s.restart(dp.Process)
		s.waitHealthy(dp.Status + "/status/ready")
		c.converge(t, propagation, dp)
		st := statusDoc(t, dp)
		reason, _ := st["last_resync_reason"].(string)
		if num(st, "resyncs") < 1 || !strings.Contains(reason, "committed offset") {
			t.Fatalf("no resync for the deleted group: %v", st)
		}
		allRoute(15)
		t.Logf("resynced: %q, %v entities at version %v", reason, st["entities"], st["version"])
	})

	t.Run("group deleted and store removed", func(t *testing.T) {
		dp.Stop(syscall.SIGTERM)
		deleteGroup()
		if err := os.RemoveAll(dp.Data); err != nil {
			t.Fatal(err)
		}
		c.lostDisk(dp) // from nothing, its version starts again
		s.restart(dp.Process)
		s.waitHealthy(dp.Status + "/status/ready")
		// Ready means a complete configuration: all of it, at once (no
		// write is in flight: it equals Postgres on its first answer).
		st := statusDoc(t, dp)
		sg := mustDo(t, 200, "GET", s.Sync+"/status", nil)
		if num(st, "version") != num(sg, "version") || st["hash"] != sg["hash"] || num(st, "entities") != num(sg, "entities") {
			t.Fatalf("ready at %v, sync-gateway at version %v hash %v entities %v", st, sg["version"], sg["hash"], sg["entities"])
		}
		c.equalNow(t, dp)
		reason, _ := st["last_resync_reason"].(string)
		if num(st, "resyncs") < 1 || reason == "" {
			t.Fatalf("no resync with an empty store: %v", st)
		}
		allRoute(15)
		t.Logf("resynced: %q, %v entities at version %v", reason, st["entities"], st["version"])
	})
	c.verdict(t, []*dataplane{dp}, verdictOpts{})
}

// Scenario 12: a data plane is offline longer than dp.deltas'
// delete.retention.ms while routes are deleted, and compaction removes the
// tombstones. On restart it resyncs and no deleted route comes back.
func TestDataplaneOfflineLongerThanTombstoneRetention(t *testing.T) {
	k := startPrivateKafka(t)
	name := uniqueName(t)
	deltas := name + "." + wire.TopicDeltas
	createTopics(t, k.Addr, broker.Compacted(deltas, map[string]string{
		"delete.retention.ms": "1000", "segment.ms": "100", "min.cleanable.dirty.ratio": "0.01",
	}))
	s := startNamedSystem(t, name)
	if s.Prefix+wire.TopicDeltas != deltas {
		t.Fatalf("prefix %q, topic created %q", s.Prefix, deltas)
	}
	dp1, dp2 := s.startDataplane("dp1"), s.startDataplane("dp2")
	dps := []*dataplane{dp1, dp2}
	c := s.checked(dps...)
	up := upstream(t)
	echo := c.must(t, 201, "POST", "/services", map[string]any{"name": "echo", "url": up.URL})["id"].(string)
	tickID := c.must(t, 201, "POST", "/services", map[string]any{"name": "tick", "host": "tick.internal"})["id"].(string)
	ids := map[int]string{}
	for i := range 8 {
		r := c.must(t, 201, "POST", "/services/"+echo+"/routes", map[string]any{"name": "d" + strconv.Itoa(i), "paths": []string{"/d" + strconv.Itoa(i)}})
		ids[i], _ = r["id"].(string)
	}
	for i := range 8 {
		testsupport.Eventually(t, propagation, both(dps, func(dp *dataplane) func() error { return routesTo(dp, fmt.Sprintf("/d%d/x", i), "/x") }))
	}

	dp1.Stop(syscall.SIGTERM)
	deleted := map[string]bool{}
	for i := range 4 {
		c.must(t, 204, "DELETE", "/routes/"+ids[i], nil)
		deleted[wire.Key(wire.TypeRoute, ids[i])] = true
	}
	for i := range 4 {
		testsupport.Eventually(t, propagation, notRouted(dp2, fmt.Sprintf("/d%d/x", i)))
	}
	// Keep appending (each write rolls a 100 ms segment and dirties the
	// log) until compaction has dropped every record of the deleted routes,
	// their tombstones included.
	tick := 0
	testsupport.Eventually(t, 90*time.Second, func() error {
		tick++
		c.must(t, 200, "PATCH", "/services/"+tickID, map[string]any{"tags": []string{"t" + strconv.Itoa(tick)}})
		left, tombstones := 0, 0
		msgs := readTopic(t, k.Addr, deltas)
		for _, m := range msgs {
			if deleted[string(m.Key)] {
				left++
				if len(m.Value) == 0 {
					tombstones++
				}
			}
		}
		if left > 0 {
			return fmt.Errorf("%d records of deleted routes (%d tombstones) still on %s (%d records)", left, tombstones, deltas, len(msgs))
		}
		t.Logf("after %d ticks: no record of the deleted routes left (%d records on %s)", tick, len(msgs), deltas)
		return nil
	})

	s.restart(dp1.Process)
	s.waitHealthy(dp1.Status + "/status/ready")
	c.converge(t, propagation, dps...)
	st := statusDoc(t, dp1)
	reason, _ := st["last_resync_reason"].(string)
	if num(st, "resyncs") < 1 || reason == "" {
		t.Errorf("no resync after an absence longer than delete.retention.ms: %v", st)
	}
	t.Logf("dp1 resynced: %q", reason)
	for _, dp := range dps {
		for i := range 8 {
			check := routesTo(dp, fmt.Sprintf("/d%d/x", i), "/x")
			if i < 4 {
				check = notRouted(dp, fmt.Sprintf("/d%d/x", i))
			}
			if err := check(); err != nil {
				t.Errorf("%s: %v", dp.NodeID, err)
			}
		}
	}
	c.verdict(t, dps, verdictOpts{})
}

// Scenario 14: malformed events written straight onto cp.changes between
// good admin writes are quarantined on cp.changes.dlq with their reason
// and offset, counted by the sync-gateway, and later writes still apply.
func TestMalformedChangeEventsAreQuarantined(t *testing.T) {
	k := startPrivateKafka(t)
	s := newSystem(t, "SYNC_MAX_RECORD_BYTES=65536")
	dp, c, echo := s.echoRouted(t, "/before", "/x")

	changes := s.Prefix + wire.TopicChanges
	// A transport of its own: kafka-go's shared one keeps metadata per
	// address, and this private broker's port may have served another.
	wr := &kafka.Writer{Addr: kafka.TCP(k.Addr), Topic: changes, RequiredAcks: kafka.RequireAll, BatchSize: 1, BatchTimeout: 10 * time.Millisecond, Transport: &kafka.Transport{}}
	defer wr.Close()
	pad := strings.Repeat("x", 70_000)
	bad := []struct{ reason, key, value string }{
		{"decode", "services/e2e-bad-json", `{"schema":1,"tx":`},
		{"type", "widgets/e2e-bad-type", `{"schema":1,"op":"upsert","type":"widgets","id":"e2e-bad-type","entity":{"id":"e2e-bad-type"}}`},
		{"key", "services/e2e-bad-key-other", `{"schema":1,"op":"upsert","type":"services","id":"e2e-bad-key","entity":{"id":"e2e-bad-key","name":"k","host":"k"}}`},
		{"schema", "services/e2e-bad-schema", `{"schema":2,"op":"upsert","type":"services","id":"e2e-bad-schema","entity":{"id":"e2e-bad-schema"}}`},
		{"batch", "services/e2e-bad-batch", `{"schema":1,"op":"upsert","type":"services","id":"e2e-bad-batch","entity":{"id":"e2e-bad-batch","name":"b","host":"b"}}`},
		{"oversized", "services/e2e-bad-big", `{"schema":1,"op":"upsert","type":"services","id":"e2e-bad-big","entity":{"id":"e2e-bad-big","pad":"` + pad + `"}}`},
	}
	inject := func(from, to int) {
		t.Helper()
		for _, b := range bad[from:to] {
			if err := wr.WriteMessages(t.Context(), kafka.Message{Key: []byte(b.key), Value: []byte(b.value)}); err != nil {
				t.Fatalf("write %s: %v", b.key, err)
			}
		}
	}
	inject(0, 3)
	c.must(t, 201, "POST", "/services/"+echo+"/routes", map[string]any{"name": "r2", "paths": []string{"/middle"}})
	inject(3, len(bad))
	c.must(t, 201, "POST", "/services/"+echo+"/routes", map[string]any{"name": "r3", "paths": []string{"/after"}})

	testsupport.Eventually(t, propagation, routesTo(dp, "/after/x", "/x"))
	testsupport.Eventually(t, propagation, routesTo(dp, "/middle/x", "/x"))
	c.converge(t, propagation, dp)
	testsupport.Eventually(t, propagation, func() error {
		if sg := mustDo(t, 200, "GET", s.Sync+"/status", nil); int(num(sg, "quarantined")) != len(bad) {
			return fmt.Errorf("sync-gateway quarantined %v, want %d", sg["quarantined"], len(bad))
		}
		return nil
	})

	offsets := map[string]int64{}
	for _, m := range readTopic(t, k.Addr, changes) {
		if strings.Contains(string(m.Key), "/e2e-bad-") {
			offsets[string(m.Key)] = m.Offset
		}
	}
	var dlq []kafka.Message
	testsupport.Eventually(t, propagation, func() error {
		dlq = readTopic(t, k.Addr, changes+wire.DLQSuffix)
		if len(dlq) != len(bad) {
			return fmt.Errorf("%d records on the DLQ, want %d", len(dlq), len(bad))
		}
		return nil
	})
	byKey := map[string]kafka.Message{}
	for _, m := range dlq {
		if _, dup := byKey[string(m.Key)]; dup {
			t.Errorf("%s quarantined twice", m.Key)
		}
		byKey[string(m.Key)] = m
	}
	for _, b := range bad {
		m, ok := byKey[b.key]
		switch {
		case !ok:
			t.Errorf("%s (%s) not on the DLQ", b.key, b.reason)
		case !strings.HasPrefix(header(m, "dlq-reason"), b.reason+":"):
			t.Errorf("%s: dlq-reason %q, want %s: ...", b.key, header(m, "dlq-reason"), b.reason)
		case header(m, "dlq-offset") != strconv.FormatInt(offsets[b.key], 10):
			t.Errorf("%s: dlq-offset %q, written at offset %d", b.key, header(m, "dlq-offset"), offsets[b.key])
		case header(m, "dlq-topic") != changes:
			t.Errorf("%s: dlq-topic %q, want %s", b.key, header(m, "dlq-topic"), changes)
		case string(m.Value) != b.value:
			t.Errorf("%s: quarantined value differs from the record written", b.key)
		}
	}

	// An event that claims a transaction number far ahead of admin-api's is
	// malformed too (tx numbers are gap-free): it must not make the
	// sequencer take the next real transactions for duplicates.
	t.Run("an event claiming a future transaction swallows nothing", func(t *testing.T) {
		sg := mustDo(t, 200, "GET", s.Sync+"/status", nil)
		future := uint64(num(sg, "last_tx")) + 1000
		ev, _ := json.Marshal(wire.ChangeEvent{Schema: 1, Tx: future, Index: 0, Count: 1, Op: wire.OpUpsert, Type: "widgets", ID: "e2e-future", Entity: json.RawMessage(`{"id":"e2e-future"}`)})
		if err := wr.WriteMessages(t.Context(), kafka.Message{Key: []byte("widgets/e2e-future"), Value: ev}); err != nil {
			t.Fatal(err)
		}
		testsupport.Eventually(t, propagation, func() error {
			if sg := mustDo(t, 200, "GET", s.Sync+"/status", nil); int(num(sg, "quarantined")) != len(bad)+1 {
				return fmt.Errorf("sync-gateway quarantined %v, want %d", sg["quarantined"], len(bad)+1)
			}
			return nil
		})
		c.must(t, 201, "POST", "/services/"+echo+"/routes", map[string]any{"name": "r4", "paths": []string{"/later"}})
		testsupport.Eventually(t, propagation, routesTo(dp, "/later/x", "/x"))
		c.converge(t, propagation, dp)
	})

	// Quarantined on purpose: exactly the injected events, on cp.changes'
	// quarantine topic only; otherwise the checker's verdict holds.
	c.verdict(t, []*dataplane{dp}, verdictOpts{injected: map[string]int64{changes + wire.DLQSuffix: int64(len(bad) + 1)}})
}

// Scenario 16, scaled down: ten declarative imports of 3000 entities each
// update most entities, delete 10% and re-create earlier deleted ones
// under the same ids, on topics with 100 ms segments and eager cleaning.
// Once compaction has rewritten the history, a fresh data plane reads it
// from offset 0 and ends equal to Postgres.
func TestCompactionTortureFreshDataplane(t *testing.T) {
	k := startPrivateKafka(t)
	name := uniqueName(t)
	torture := map[string]string{"segment.ms": "100", "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "2000"}
	deltas := name + "." + wire.TopicDeltas
	createTopics(t, k.Addr, broker.Compacted(deltas, torture), broker.Compacted(name+"."+wire.TopicChanges, torture))
	s := startNamedSystem(t, name)
	dp1 := s.startDataplane("dp1")
	c := s.checked(dp1)

	// Ten generations: each updates every entity it keeps (a new tag),
	// leaves out another tenth of the services with their routes (cascade
	// deletes) and re-creates the tenth the previous one left out.
	// A second data plane starts from nothing half-way, racing the
	// imports and the cleaner.
	const n, generations = 1500, 10 // services, each with one route
	var mid *dataplane
	for gen := range generations {
		if gen == generations/2 {
			mid = s.startDataplane("dp-mid")
			c.sample(mid)
		}
		omit := func(i int) bool { return gen > 0 && i%10 == gen%10 }
		var svcs, routes []map[string]any
		for i := range n {
			if omit(i) {
				continue
			}
			tag := fmt.Sprintf("gen-%d", gen)
			sid := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
			svcs = append(svcs, map[string]any{"id": sid, "name": fmt.Sprintf("svc-%04d", i), "host": fmt.Sprintf("h%04d.internal", i), "tags": []string{tag}})
			routes = append(routes, map[string]any{"id": fmt.Sprintf("00000000-0000-4000-9000-%012d", i), "name": fmt.Sprintf("rt-%04d", i),
				"paths": []string{fmt.Sprintf("/p%04d", i)}, "tags": []string{tag}, "service": map[string]any{"id": sid}})
		}
		start := time.Now()
		r := c.must(t, 201, "POST", "/config", map[string]any{"_format_version": "3.0", "services": svcs, "routes": routes})
		t.Logf("import %d: %v in %s", gen, r, time.Since(start).Round(10*time.Millisecond))
	}
	if got, want := s.countRows("services"), n-n/10; got != want {
		t.Fatalf("Postgres has %d services, want %d", got, want)
	}
	c.converge(t, 120*time.Second, dp1, mid)

	// Drive the cleaner until the history is compacted: most records gone
	// and the tombstones of the last import removed.
	tickID := c.must(t, 201, "POST", "/services", map[string]any{"name": "tick", "host": "tick.internal"})["id"].(string)
	tick := 0
	testsupport.Eventually(t, 90*time.Second, func() error {
		tick++
		c.must(t, 200, "PATCH", "/services/"+tickID, map[string]any{"tags": []string{"t" + strconv.Itoa(tick)}})
		end := highWaterMark(t, k.Addr, deltas)
		msgs := readTopic(t, k.Addr, deltas)
		tombstones := 0
		for _, m := range msgs {
			if len(m.Value) == 0 {
				tombstones++
			}
		}
		if int64(len(msgs)) > end/2 || tombstones > 0 {
			return fmt.Errorf("%s: %d records of %d written, %d tombstones", deltas, len(msgs), end, tombstones)
		}
		t.Logf("after %d ticks: %d records of %d written, no tombstone", tick, len(msgs), end)
		return nil
	})

	dp2 := s.startDataplane("dp2")
	c.sample(dp2)
	s.waitHealthy(dp2.Status + "/status/ready")
	c.verdict(t, []*dataplane{dp1, mid, dp2}, verdictOpts{})
	st := statusDoc(t, dp2)
	if num(st, "resyncs") < 1 || num(st, "hash_mismatches") != 0 || num(st, "bad_records") != 0 {
		t.Errorf("fresh data plane did not build from the topic: %v", st)
	}
	t.Logf("fresh dp2: %v entities at version %v, hash %v, %v records read", st["entities"], st["version"], st["hash"], st["records_consumed"])
}

// noExits fails when a process exited during the fault (the supervisor
// restarted it so that the scenario's other checks could run).
func noExits(t *testing.T, sv *supervisor) {
	exits := sv.exited()
	if len(exits) == 0 {
		return
	}
	t.Fatalf("processes exited during the fault: %s", strings.Join(exits, "; "))
}

func slicesMax(v []float64) float64 {
	m := v[0]
	for _, x := range v[1:] {
		m = max(m, x)
	}
	return m
}
