//go:build integration

package main

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/sequencer"
	"github.com/deltaplane/deltaplane/shared/testsupport"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// handLog writes a dp.deltas history by hand, keeping the content model
// and its hash the way the sync-gateway computes them.
type handLog struct {
	e     *env
	w     *kafka.Writer
	model map[string][]byte
	hash  wire.Hash
	sent  map[uint64][]kafka.Message // version -> its records
}

func (e *env) handLog() *handLog {
	w := &kafka.Writer{Addr: kafka.TCP(e.brokers...), Topic: e.prefix + wire.TopicDeltas, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	e.t.Cleanup(func() { w.Close() })
	return &handLog{e: e, w: w, model: map[string][]byte{}, sent: map[uint64][]kafka.Message{}}
}

// batch builds version's records from key/value pairs ("" is a tombstone)
// and applies them to the model; a repair batch changes nothing.
func (l *handLog) batch(version, tx uint64, repair bool, kv ...string) []kafka.Message {
	for i := 0; i < len(kv); i += 2 {
		if old, ok := l.model[kv[i]]; ok {
			l.hash = l.hash.Sub(wire.EntityHash(kv[i], old))
			delete(l.model, kv[i])
		}
		if kv[i+1] != "" {
			l.model[kv[i]] = []byte(kv[i+1])
			l.hash = l.hash.Add(wire.EntityHash(kv[i], []byte(kv[i+1])))
		}
	}
	var msgs []kafka.Message
	for i := 0; i < len(kv); i += 2 {
		h := wire.DeltaHeader{Schema: 1, Version: version, Index: i / 2, Count: len(kv) / 2, Hash: l.hash, Tx: tx}
		m := kafka.Message{Key: []byte(kv[i]), Headers: h.Headers()}
		if kv[i+1] != "" {
			m.Value = []byte(kv[i+1])
		}
		if repair {
			m.Headers = append(m.Headers, kafka.Header{Key: sequencer.HeaderRepair, Value: []byte("1")})
		}
		msgs = append(msgs, m)
	}
	l.sent[version] = msgs
	return msgs
}

func (l *handLog) write(msgs ...kafka.Message) {
	l.e.t.Helper()
	if err := l.w.WriteMessages(l.e.t.Context(), msgs...); err != nil {
		l.e.t.Fatal(err)
	}
}

// twoVersions writes the start every repair test shares: version 1 (tx
// 1) puts services/a and services/b, version 2 (tx 2) v2's key/value
// pairs. It returns version 1's records, which a test writes again as the
// late write.
func (l *handLog) twoVersions(v2 ...string) []kafka.Message {
	l.e.t.Helper()
	v1 := l.batch(1, 1, false, "services/a", ent("a", 1), "services/b", ent("b", 1))
	l.write(v1...)
	l.write(l.batch(2, 2, false, v2...)...)
	return v1
}

// ent is the entity upsert() puts on cp.changes.
func ent(id string, tx uint64) string {
	return fmt.Sprintf(`{"id":%q,"name":"n-%s","tx":%d}`, id, id, tx)
}

// lastPerKey is what compaction keeps: the last record of every key (nil
// value: a tombstone).
func lastPerKey(ds []delta) map[string][]byte {
	out := map[string][]byte{}
	for _, d := range ds {
		out[d.Key] = d.Value
	}
	return out
}

// repairOf returns the records of one repair version.
func repairOf(ds []delta, version uint64) []delta {
	var out []delta
	for _, d := range ds {
		if d.Repair && d.H.Version == version {
			out = append(out, d)
		}
	}
	return out
}

// A stale duplicate of version 1 lands after versions 2 and 3 (an instance
// paused between its fencing check and its write). The active instance
// publishes one repair version with the current content of the regressed
// keys, then carries on; a restart finds nothing more to repair.
func TestLateWriteIsRepaired(t *testing.T) {
	for _, c := range []struct {
		name  string
		input bool // a transaction is waiting when the gateway starts
	}{{"while idle", false}, {"before the next transaction", true}} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			l := e.handLog()
			a, b, cc, d := "services/a", "services/b", "services/c", "services/d"
			v1 := l.twoVersions(a, ent("a", 2), cc, ent("c", 2))
			l.write(l.batch(3, 3, false, b, "")...)
			hash3 := l.hash
			l.write(v1...) // the late write

			if c.input {
				e.produce(upsert(4, 0, 1, wire.TypeService, "d"))
			}
			g := e.start(nil)
			if !c.input {
				s := e.waitVersion(g, 4)
				if s.Repairs != 1 || s.Hash != hash3.String() || s.LastTx != 3 {
					t.Fatalf("after the repair: status %+v, want 1 repair, hash %s, last tx 3", s, hash3)
				}
				e.produce(upsert(4, 0, 1, wire.TypeService, "d"))
			}
			s := e.waitVersion(g, 5)
			ds := e.deltas()
			h := checkHistory(t, ds)
			if !slices.Equal(h.Repairs, []uint64{4}) || h.Versions != 5 || h.Tx[5] != 4 || s.Repairs != 1 {
				t.Fatalf("repairs %v versions %d tx %v status %+v; want one repair, version 4", h.Repairs, h.Versions, h.Tx, s)
			}
			rep := repairOf(ds, 4)
			if len(rep) != 2 || rep[0].Key != a || string(rep[0].Value) != ent("a", 2) || rep[1].Key != b || len(rep[1].Value) != 0 ||
				rep[0].H.Tx != 3 || rep[0].H.Hash != hash3 || rep[0].H.Count != 2 {
				t.Fatalf("repair records %+v; want a=%s and a tombstone of b, tx 3, hash %s", rep, ent("a", 2), hash3)
			}
			want := map[string][]byte{a: []byte(ent("a", 2)), b: nil, cc: []byte(ent("c", 2)), d: []byte(ent("d", 4))}
			if got := lastPerKey(ds); !maps.EqualFunc(got, want, bytes.Equal) {
				t.Fatalf("last record per key %q, want %q", got, want)
			}

			// A restart rebuilds a healed history: the next version is tx 5.
			g.stop(t)
			g = e.start(nil)
			e.produce(upsert(5, 0, 1, wire.TypeService, "e"))
			s = e.waitVersion(g, 6)
			h = checkHistory(t, e.deltas())
			if !slices.Equal(h.Repairs, []uint64{4}) || h.Versions != 6 || h.Tx[6] != 5 || s.Repairs != 0 {
				t.Fatalf("after a restart: repairs %v versions %d tx %v status %+v", h.Repairs, h.Versions, h.Tx, s)
			}
		})
	}
}

// The history ends inside a transaction's batch and holds a regressed key
// before it: the batch is published again first, whole, then the repair.
func TestRepairFollowsATrailingIncompleteBatch(t *testing.T) {
	e := newEnv(t)
	l := e.handLog()
	a := "services/a"
	v1 := l.twoVersions(a, ent("a", 2))
	l.write(v1...) // late write: a regresses, b does not
	hash2 := l.hash
	v3 := l.batch(3, 3, false, "services/c", ent("c", 3), "services/d", ent("d", 3))
	l.write(v3[0]) // crash mid-batch
	e.produce(upsert(3, 0, 2, wire.TypeService, "c"), upsert(3, 1, 2, wire.TypeService, "d"))

	g := e.start(nil)
	s := e.waitVersion(g, 4)
	ds := e.deltas()
	h := checkHistory(t, ds)
	rep := repairOf(ds, 4)
	if !slices.Equal(h.Repairs, []uint64{4}) || h.Tx[3] != 3 || len(rep) != 1 || rep[0].Key != a || string(rep[0].Value) != ent("a", 2) ||
		rep[0].H.Hash != l.hash || s.Repairs != 1 || s.Hash != l.hash.String() {
		t.Fatalf("repairs %v, repair records %+v, status %+v (hash after v2 %s, v3 %s)", h.Repairs, rep, s, hash2, l.hash)
	}
	if got := lastPerKey(ds)[a]; string(got) != ent("a", 2) {
		t.Fatalf("last record of %s is %s", a, got)
	}
	e.produce(upsert(4, 0, 1, wire.TypeService, "e"))
	e.waitVersion(g, 5)
	if h := checkHistory(t, e.deltas()); h.Versions != 5 || h.Tx[5] != 4 || len(h.Repairs) != 1 {
		t.Fatalf("versions %d tx %v repairs %v", h.Versions, h.Tx, h.Repairs)
	}
}

// An instance crashed in the middle of a repair batch: the next one
// publishes the same repair batch again, whole, under the same version.
func TestPartialRepairIsRepublishedIdentically(t *testing.T) {
	e := newEnv(t)
	l := e.handLog()
	a, b := "services/a", "services/b"
	v1 := l.twoVersions(a, ent("a", 2), b, ent("b", 2))
	l.write(v1...)
	rep := l.batch(3, 2, true, a, ent("a", 2), b, ent("b", 2))
	l.write(rep[0])

	g := e.start(nil)
	e.waitVersion(g, 3)
	e.produce(upsert(3, 0, 1, wire.TypeService, "c"))
	s := e.waitVersion(g, 4)
	ds := e.deltas()
	h := checkHistory(t, ds) // fails if version 3 came back with other records
	if got := repairOf(ds, 3); len(got) != 3 || got[1].Key != a || got[2].Key != b || got[1].H.Index != 0 || got[2].H.Index != 1 {
		t.Fatalf("version 3 records %+v, want the partial one then the whole repair again", got)
	}
	if !slices.Equal(h.Repairs, []uint64{3}) || h.Versions != 4 || h.Tx[4] != 3 || s.Repairs != 1 {
		t.Fatalf("repairs %v versions %d tx %v status %+v", h.Repairs, h.Versions, h.Tx, s)
	}
	want := map[string][]byte{a: []byte(ent("a", 2)), b: []byte(ent("b", 2)), "services/c": []byte(ent("c", 3))}
	if got := lastPerKey(ds); !maps.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("last record per key %q, want %q", got, want)
	}
}

// The late write lands while the gateway runs with no input: the idle
// check sees dp.deltas' end offset move, rebuilds and repairs.
func TestLateWriteWhileIdleIsRepaired(t *testing.T) {
	e := newEnv(t)
	l := e.handLog()
	a, b := "services/a", "services/b"
	v1 := l.twoVersions(a, ent("a", 2))
	g := e.start(nil)
	testsupport.Eventually(t, 30*time.Second, func() error {
		s, err := g.status()
		if err == nil && (!s.Active || s.Version != 2) {
			err = fmt.Errorf("status %+v, want active at version 2", s)
		}
		return err
	})
	l.write(v1...) // the paused instance resumes
	s := e.waitVersion(g, 3)
	ds := e.deltas()
	h := checkHistory(t, ds)
	rep := repairOf(ds, 3)
	if !slices.Equal(h.Repairs, []uint64{3}) || len(rep) != 1 || rep[0].Key != a || string(rep[0].Value) != ent("a", 2) ||
		s.Repairs != 1 || s.Hash != l.hash.String() || s.Rebuilds < 2 {
		t.Fatalf("repairs %v, repair records %+v, status %+v", h.Repairs, rep, s)
	}
	want := map[string][]byte{a: []byte(ent("a", 2)), b: []byte(ent("b", 1))}
	if got := lastPerKey(ds); !maps.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("last record per key %q, want %q", got, want)
	}
}
