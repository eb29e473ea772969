package sequencer

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/shared/wire"
)

// feed is a helper that offers change events at increasing offsets.
type feed struct {
	t      *testing.T
	asm    *Assembler
	st     *State
	offset int64
	out    []Batch
	dlq    []Reject
}

func newFeed(t *testing.T) *feed {
	return &feed{t: t, asm: NewAssembler(1000), st: NewState(true)}
}

func (f *feed) raw(key, value string) Step {
	f.t.Helper()
	step := f.asm.Offer(Input{Offset: f.offset, Key: []byte(key), Value: []byte(value)}, f.st.LastTx())
	f.offset++
	f.dlq = append(f.dlq, step.Rejects...)
	for _, tx := range step.Closed {
		b := f.st.Prepare(tx)
		if err := f.st.Apply(b); err != nil {
			f.t.Fatal(err)
		}
		f.out = append(f.out, b)
	}
	return step
}

func (f *feed) ev(tx uint64, idx, count int, op wire.Op, typ, id, entity string) Step {
	f.t.Helper()
	ev := wire.ChangeEvent{Schema: 1, Tx: tx, Index: idx, Count: count, Op: op, Type: typ, ID: id}
	if entity != "" {
		ev.Entity = json.RawMessage(entity)
	}
	b, _ := json.Marshal(ev)
	return f.raw(wire.Key(typ, id), string(b))
}

func svc(id string) string { return fmt.Sprintf(`{"id":%q,"host":"h"}`, id) }
func route(id, svc string) string {
	return fmt.Sprintf(`{"id":%q,"service":{"id":%q}}`, id, svc)
}

func TestSingleEventTransactionsGetGapFreeVersions(t *testing.T) {
	f := newFeed(t)
	f.ev(1, 0, 1, wire.OpUpsert, wire.TypeService, "a", svc("a"))
	f.ev(2, 0, 1, wire.OpUpsert, wire.TypeService, "b", svc("b"))
	f.ev(3, 0, 1, wire.OpDelete, wire.TypeService, "a", "")
	if len(f.out) != 3 {
		t.Fatalf("batches = %d, want 3", len(f.out))
	}
	for i, b := range f.out {
		if b.Version != uint64(i+1) || b.Tx != uint64(i+1) || len(b.Records) != 1 {
			t.Fatalf("batch %d = version %d tx %d records %d", i, b.Version, b.Tx, len(b.Records))
		}
	}
	if f.out[2].Records[0].Value != nil {
		t.Fatal("delete must be a tombstone (nil value)")
	}
	want := wire.Hash(0).Add(wire.EntityHash("services/b", []byte(svc("b"))))
	if f.st.Hash() != want || f.out[2].Hash != want || f.st.Len() != 1 {
		t.Fatalf("hash %s (batch %s), entities %d; want %s, 1", f.st.Hash(), f.out[2].Hash, f.st.Len(), want)
	}
}

func TestMultiEventTransactionIsOneBatch(t *testing.T) {
	f := newFeed(t)
	st := f.ev(1, 0, 3, wire.OpUpsert, wire.TypeService, "s", svc("s"))
	if len(st.Closed) != 0 || st.Commit != -1 {
		t.Fatalf("first of three: closed %d commit %d", len(st.Closed), st.Commit)
	}
	f.ev(1, 1, 3, wire.OpUpsert, wire.TypeRoute, "r1", route("r1", "s"))
	st = f.ev(1, 2, 3, wire.OpUpsert, wire.TypeRoute, "r2", route("r2", "s"))
	if len(f.out) != 1 || len(f.out[0].Records) != 3 || f.out[0].Version != 1 || st.Commit != 2 {
		t.Fatalf("out %+v commit %d", f.out, st.Commit)
	}
	b := f.out[0]
	for i := range b.Records {
		h := b.Header(i)
		if h.Index != i || h.Count != 3 || h.Version != 1 || h.Hash != f.st.Hash() || h.Tx != 1 {
			t.Fatalf("header %d = %+v", i, h)
		}
	}
}

func TestDuplicatesAreSkipped(t *testing.T) {
	f := newFeed(t)
	f.ev(1, 0, 1, wire.OpUpsert, wire.TypeService, "a", svc("a"))
	st := f.ev(1, 0, 1, wire.OpUpsert, wire.TypeService, "a", svc("a"))
	if !st.Duplicate || len(f.out) != 1 {
		t.Fatalf("duplicate tx: dup=%v batches=%d", st.Duplicate, len(f.out))
	}
	f.ev(2, 0, 2, wire.OpUpsert, wire.TypeService, "b", svc("b"))
	st = f.ev(2, 0, 2, wire.OpUpsert, wire.TypeService, "b", svc("b"))
	if !st.Duplicate {
		t.Fatal("same position twice inside a pending tx must be a duplicate")
	}
	f.ev(2, 1, 2, wire.OpUpsert, wire.TypeService, "c", svc("c"))
	if len(f.out) != 2 || len(f.out[1].Records) != 2 {
		t.Fatalf("batches %d, last records %d", len(f.out), len(f.out[len(f.out)-1].Records))
	}
}

func TestQuarantine(t *testing.T) {
	big := `{"id":"x","pad":"` + strings.Repeat("x", 2000) + `"}`
	cases := []struct {
		name   string
		key    string
		value  string
		reason string
	}{
		{"bad json", "services/x", `{not json`, wire.ReasonDecode},
		{"unknown type", "widgets/x", `{"schema":1,"tx":1,"index":0,"count":1,"op":"upsert","type":"widgets","id":"x","entity":{"id":"x"}}`, wire.ReasonType},
		{"wrong key", "services/y", `{"schema":1,"tx":1,"index":0,"count":1,"op":"upsert","type":"services","id":"x","entity":{"id":"x"}}`, wire.ReasonKey},
		{"newer schema", "services/x", `{"schema":2,"tx":1,"index":0,"count":1,"op":"upsert","type":"services","id":"x","entity":{"id":"x"}}`, wire.ReasonSchema},
		{"oversized", "services/x", `{"schema":1,"tx":1,"index":0,"count":1,"op":"upsert","type":"services","id":"x","entity":` + big + `}`, wire.ReasonOversized},
		{"bad position", "services/x", `{"schema":1,"tx":1,"index":1,"count":1,"op":"upsert","type":"services","id":"x","entity":{"id":"x"}}`, wire.ReasonBatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFeed(t)
			f.raw(c.key, c.value)
			if len(f.dlq) != 1 || !strings.HasPrefix(f.dlq[0].Reason, c.reason+":") || f.dlq[0].Input.Offset != 0 {
				t.Fatalf("dlq = %+v, want one %s", f.dlq, c.reason)
			}
			if f.st.Version() != 0 {
				t.Fatalf("a rejected event published version %d", f.st.Version())
			}
			// The pipeline continues.
			f.ev(2, 0, 1, wire.OpUpsert, wire.TypeService, "ok", svc("ok"))
			if f.st.Version() != 1 || !f.st.Has("services/ok") {
				t.Fatalf("later event not applied: version %d", f.st.Version())
			}
		})
	}
}

func TestQuarantinedEventStillCompletesItsTransaction(t *testing.T) {
	f := newFeed(t)
	f.ev(1, 0, 2, wire.OpUpsert, wire.TypeService, "a", svc("a"))
	st := f.ev(1, 1, 2, wire.OpUpsert, "widgets", "w", `{"id":"w"}`)
	if len(st.Closed) != 1 || len(f.out) != 1 || len(f.out[0].Records) != 1 || len(f.dlq) != 1 {
		t.Fatalf("closed %d out %d dlq %d", len(st.Closed), len(f.out), len(f.dlq))
	}
	// A transaction whose events are all rejected publishes no version and
	// does not move the last tx (its number is not trusted).
	f.ev(2, 0, 1, wire.OpUpsert, "widgets", "w2", `{"id":"w2"}`)
	if f.st.Version() != 1 || f.st.LastTx() != 1 {
		t.Fatalf("version %d last tx %d, want 1, 1", f.st.Version(), f.st.LastTx())
	}
	// The next transaction still gets the next version.
	f.ev(3, 0, 1, wire.OpUpsert, wire.TypeService, "b", svc("b"))
	if f.st.Version() != 2 || f.st.LastTx() != 3 {
		t.Fatalf("version %d last tx %d, want 2, 3", f.st.Version(), f.st.LastTx())
	}
}

func TestUnreadableEventIsClosedByTheNextTransaction(t *testing.T) {
	f := newFeed(t)
	f.ev(1, 0, 2, wire.OpUpsert, wire.TypeService, "a", svc("a"))
	st := f.raw("services/b", "{garbage")
	if len(st.Closed) != 0 || st.Commit != -1 {
		t.Fatalf("garbage closed %d commit %d", len(st.Closed), st.Commit)
	}
	st = f.ev(2, 0, 1, wire.OpUpsert, wire.TypeService, "c", svc("c"))
	if len(st.Closed) != 2 || f.st.Version() != 2 || st.Commit != 2 {
		t.Fatalf("closed %d version %d commit %d", len(st.Closed), f.st.Version(), st.Commit)
	}
}

func TestRedeliveryRestartsAssembly(t *testing.T) {
	f := newFeed(t)
	f.ev(1, 0, 2, wire.OpUpsert, wire.TypeService, "a", svc("a"))
	f.offset = 0 // the input goes back (rebalance)
	f.ev(1, 0, 2, wire.OpUpsert, wire.TypeService, "a", svc("a"))
	f.ev(1, 1, 2, wire.OpUpsert, wire.TypeService, "b", svc("b"))
	if len(f.out) != 1 || len(f.out[0].Records) != 2 {
		t.Fatalf("out %+v", f.out)
	}
}

func TestPrepareIsDeterministic(t *testing.T) {
	run := func() []Batch {
		f := newFeed(t)
		f.ev(1, 0, 2, wire.OpUpsert, wire.TypeService, "a", svc("a"))
		f.ev(1, 1, 2, wire.OpUpsert, wire.TypeRoute, "r", route("r", "a"))
		f.ev(2, 0, 1, wire.OpDelete, wire.TypeRoute, "r", "")
		return f.out
	}
	a, b := run(), run()
	for i := range a {
		if a[i].Version != b[i].Version || a[i].Hash != b[i].Hash || fmt.Sprint(a[i].Records) != fmt.Sprint(b[i].Records) {
			t.Fatalf("batch %d differs: %+v vs %+v", i, a[i], b[i])
		}
	}
}

func TestReplayerRebuildsState(t *testing.T) {
	f := newFeed(t)
	f.ev(1, 0, 2, wire.OpUpsert, wire.TypeService, "a", svc("a"))
	f.ev(1, 1, 2, wire.OpUpsert, wire.TypeService, "b", svc("b"))
	f.ev(2, 0, 1, wire.OpDelete, wire.TypeService, "a", "")
	f.ev(3, 0, 2, wire.OpUpsert, wire.TypeService, "c", svc("c"))
	f.ev(3, 1, 2, wire.OpUpsert, wire.TypeService, "d", svc("d"))

	type rec struct {
		k string
		v []byte
		h wire.DeltaHeader
	}
	var log []rec
	for _, b := range f.out {
		for i, r := range b.Records {
			log = append(log, rec{r.Key, r.Value, b.Header(i)})
		}
	}
	cases := []struct {
		name       string
		recs       []rec
		version    uint64
		incomplete bool
	}{
		{"whole history", log, 3, false},
		{"trailing incomplete batch dropped", log[:4], 2, true},
		{"republished batch after a crash", append(append([]rec{}, log[:4]...), log[3:]...), 3, false},
		{"duplicate earlier version ignored", append(append([]rec{}, log...), log[0], log[1]), 3, false},
		{"compacted: superseded upsert gone", log[1:], 3, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rp := NewReplayer(false)
			for i, r := range c.recs {
				rp.Add(int64(i), r.k, r.v, r.h)
			}
			st := rp.State()
			if st.Version() != c.version || rp.Incomplete() != c.incomplete {
				t.Fatalf("version %d incomplete %v, want %d %v", st.Version(), rp.Incomplete(), c.version, c.incomplete)
			}
			if c.version == 3 && (st.Hash() != f.st.Hash() || !rp.HashOK() || st.LastTx() != 3 || st.Len() != 3) {
				t.Fatalf("hash %s ok %v tx %d len %d; want %s", st.Hash(), rp.HashOK(), st.LastTx(), st.Len(), f.st.Hash())
			}
		})
	}
}

func TestReplayerCompletesVersionFollowedByALaterOne(t *testing.T) {
	rp := NewReplayer(false)
	rp.Add(0, "services/x", []byte(`{"id":"x"}`), wire.DeltaHeader{Schema: 1, Version: 1, Index: 0, Count: 2, Tx: 1})
	// index 1 of version 1 was compacted away by a later write of its key
	rp.Add(1, "services/y", []byte(`{"id":"y"}`), wire.DeltaHeader{Schema: 1, Version: 2, Index: 0, Count: 1, Tx: 2})
	if st := rp.State(); st.Version() != 2 || st.Len() != 2 || rp.Incomplete() {
		t.Fatalf("version %d len %d incomplete %v", st.Version(), st.Len(), rp.Incomplete())
	}
}

func TestSnapshotAndLoad(t *testing.T) {
	f := newFeed(t)
	f.ev(1, 0, 2, wire.OpUpsert, wire.TypeService, "a", svc("a"))
	f.ev(1, 1, 2, wire.OpUpsert, wire.TypeRoute, "r", route("r", "a"))
	snap := f.st.Snapshot()
	if len(snap[wire.TypeService]) != 1 || len(snap[wire.TypeRoute]) != 1 {
		t.Fatalf("snapshot %v", snap)
	}
	c := wire.FullConfig{Schema: 1, Version: 1, Tx: 1, Hash: f.st.Hash().String(), Config: snap}
	ents, err := c.Entities()
	if err != nil {
		t.Fatal(err)
	}
	st := NewState(true)
	st.Load(ents, 1, 1)
	if st.Hash() != f.st.Hash() {
		t.Fatalf("loaded hash %s, want %s", st.Hash(), f.st.Hash())
	}
}

// FuzzOffer: no input record makes the sequencer panic, and every record is
// either accepted into a batch, quarantined, or skipped as a duplicate.
func FuzzOffer(f *testing.F) {
	f.Add("services/a", `{"schema":1,"tx":1,"index":0,"count":1,"op":"upsert","type":"services","id":"a","entity":{"id":"a"}}`)
	f.Add("routes/r", `{"schema":1,"tx":1,"index":0,"count":2,"op":"upsert","type":"routes","id":"r","entity":{"id":"r","service":{"id":"a"}}}`)
	f.Add("services/a", `{"schema":1,"tx":2,"index":0,"count":1,"op":"delete","type":"services","id":"a"}`)
	f.Add("x", `{`)
	f.Fuzz(func(t *testing.T, key, value string) {
		asm := NewAssembler(1 << 16)
		st := NewState(false)
		for off := int64(0); off < 3; off++ {
			step := asm.Offer(Input{Offset: off, Key: []byte(key), Value: []byte(value)}, st.LastTx())
			for _, tx := range step.Closed {
				b := st.Prepare(tx)
				if len(b.Records) != len(tx.Events) {
					t.Fatalf("tx %d: %d records for %d events", tx.ID, len(b.Records), len(tx.Events))
				}
				if err := st.Apply(b); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// cp.changes is compacted: a service's create can be removed behind a
// later update that comes after a route referring to it. Read from the
// start, the route arrives before any record of its service; Postgres
// enforced the reference when the route was written, so the sequencer
// publishes it.
func TestChildBeforeItsCompactedParentIsPublished(t *testing.T) {
	f := newFeed(t)
	// tx 1 (service create) was compacted away: the history starts at tx 2.
	f.offset = 1
	f.ev(2, 0, 1, wire.OpUpsert, wire.TypeRoute, "r", route("r", "s"))
	f.ev(3, 0, 1, wire.OpUpsert, wire.TypeService, "s", `{"id":"s","host":"h3"}`)
	f.ev(4, 0, 1, wire.OpUpsert, wire.TypePlugin, "p", `{"id":"p","service":{"id":"gone"},"consumer":{"id":"c"}}`)
	if len(f.dlq) != 0 || !f.st.Has("routes/r") || !f.st.Has("services/s") || !f.st.Has("plugins/p") || f.st.Version() != 3 {
		for _, r := range f.dlq {
			t.Errorf("quarantined %s: %s", r.Input.Key, r.Reason)
		}
		t.Fatalf("version %d, entities %d; want 3, 3 and nothing quarantined", f.st.Version(), f.st.Len())
	}
}
