package sequencer

import (
	"fmt"
	"reflect"
	"testing"

	"github.com/deltaplane/deltaplane/shared/wire"
)

type logRec struct {
	k string
	v []byte
	h wire.DeltaHeader
}

// batchRecs turns a batch into its dp.deltas records.
func batchRecs(b Batch) []logRec {
	var out []logRec
	for i, r := range b.Records {
		out = append(out, logRec{r.Key, r.Value, b.Header(i)})
	}
	return out
}

func replay(recs ...[]logRec) *Replayer {
	rp := NewReplayer(false)
	off := int64(0)
	for _, rs := range recs {
		for _, r := range rs {
			rp.Add(off, r.k, r.v, r.h)
			off++
		}
	}
	return rp
}

// threeVersions is a feed of v1 (a, b), v2 (a again, c) and v3 (delete b).
func threeVersions(t *testing.T) *feed {
	f := newFeed(t)
	f.ev(1, 0, 2, wire.OpUpsert, wire.TypeService, "a", svc("a"))
	f.ev(1, 1, 2, wire.OpUpsert, wire.TypeService, "b", svc("b"))
	f.ev(2, 0, 2, wire.OpUpsert, wire.TypeService, "a", `{"id":"a","host":"h2"}`)
	f.ev(2, 1, 2, wire.OpUpsert, wire.TypeService, "c", svc("c"))
	f.ev(3, 0, 1, wire.OpDelete, wire.TypeService, "b", "")
	return f
}

func TestReplayerFindsVersionRegressions(t *testing.T) {
	f := threeVersions(t)
	f.ev(4, 0, 1, wire.OpUpsert, wire.TypeService, "a", `{"id":"a","host":"h4"}`)
	v1, v2, v3, v4 := batchRecs(f.out[0]), batchRecs(f.out[1]), batchRecs(f.out[2]), batchRecs(f.out[3])
	// offsets: v1 0-1, v2 2-3, v3 4, then whatever follows from 5
	cases := []struct {
		name string
		log  [][]logRec
		want []Regression
	}{
		{"clean history", [][]logRec{v1, v2, v3, v4}, nil},
		{"identical republish of the last version", [][]logRec{v1, v2, v2}, nil},
		{"stale duplicate after newer versions", [][]logRec{v1, v2, v3, v1},
			[]Regression{{Key: "services/a", Version: 2, Offset: 2, Stale: 1}, {Key: "services/b", Version: 3, Offset: 4, Stale: 1}}},
		{"a later version heals a key", [][]logRec{v1, v2, v3, v1, v4},
			[]Regression{{Key: "services/b", Version: 3, Offset: 4, Stale: 1}}},
		{"part of a stale duplicate", [][]logRec{v1, v2, v3, v1[:1]},
			[]Regression{{Key: "services/a", Version: 2, Offset: 2, Stale: 1}}},
		{"stale record inside a newer batch", [][]logRec{v1, v2[:1], v1[:1], v2[1:]},
			[]Regression{{Key: "services/a", Version: 2, Offset: 2, Stale: 1}}},
		{"newer record only in a trailing incomplete batch", [][]logRec{v1, {v2[0]}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := replay(c.log...).Regressions()
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("regressions %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestRepairBatchRestoresTheLastRecordPerKey(t *testing.T) {
	f := newFeed(t)
	f.ev(1, 0, 2, wire.OpUpsert, wire.TypeService, "a", svc("a"))
	f.ev(1, 1, 2, wire.OpUpsert, wire.TypeService, "b", svc("b"))
	f.ev(2, 0, 2, wire.OpUpsert, wire.TypeService, "a", `{"id":"a","host":"h2"}`)
	f.ev(2, 1, 2, wire.OpDelete, wire.TypeService, "b", "")
	v1, v2 := batchRecs(f.out[0]), batchRecs(f.out[1])
	history := [][]logRec{v1, v2, v1}
	rp := replay(history...)
	st := rp.State()
	regs := rp.Regressions()
	if len(regs) != 2 || rp.Incomplete() {
		t.Fatalf("regressions %+v incomplete %v", regs, rp.Incomplete())
	}
	// the current content: each key's record of the highest version
	flat := append(append(append([]logRec{}, v1...), v2...), v1...)
	recs := make([]Record, len(regs))
	for i, rg := range regs {
		recs[i] = Record{Key: rg.Key, Value: flat[rg.Offset].v}
	}
	b, err := st.Repair(recs)
	if err != nil {
		t.Fatal(err)
	}
	if !b.Repair || b.Version != 3 || b.Tx != 2 || b.Hash != f.st.Hash() || len(b.Records) != 2 ||
		string(b.Records[0].Value) != `{"id":"a","host":"h2"}` || b.Records[1].Key != "services/b" || b.Records[1].Value != nil {
		t.Fatalf("repair batch %+v", b)
	}
	again, _ := replay(history...).State().Repair(recs)
	if !reflect.DeepEqual(again, b) {
		t.Fatal("the same history gave another repair batch")
	}

	t.Run("published repair heals the history", func(t *testing.T) {
		rp := replay(append(history, batchRecs(b))...)
		st := rp.State()
		if regs := rp.Regressions(); len(regs) != 0 {
			t.Fatalf("regressions after the repair %+v", regs)
		}
		if st.Version() != 3 || st.LastTx() != 2 || st.Hash() != f.st.Hash() || !rp.HashOK() || st.Len() != 1 {
			t.Fatalf("after the repair version %d tx %d hash %s ok %v len %d", st.Version(), st.LastTx(), st.Hash(), rp.HashOK(), st.Len())
		}
	})
	t.Run("partial repair is republished identically", func(t *testing.T) {
		rp := replay(append(history, batchRecs(b)[:1])...)
		if !rp.Incomplete() || !rp.TrailingRepair() {
			t.Fatalf("incomplete %v trailing repair %v", rp.Incomplete(), rp.TrailingRepair())
		}
		if got := rp.Regressions(); !reflect.DeepEqual(got, regs) {
			t.Fatalf("regressions %+v, want %+v", got, regs)
		}
		if again, err := rp.State().Repair(recs); err != nil || !reflect.DeepEqual(again, b) {
			t.Fatalf("repair after a partial one differs: %v", err)
		}
	})
	t.Run("trailing transaction batch is no repair", func(t *testing.T) {
		f.ev(3, 0, 2, wire.OpUpsert, wire.TypeService, "c", svc("c"))
		f.ev(3, 1, 2, wire.OpUpsert, wire.TypeService, "d", svc("d"))
		rp := replay(append(history, batchRecs(f.out[2])[:1])...)
		if !rp.Incomplete() || rp.TrailingRepair() {
			t.Fatalf("incomplete %v trailing repair %v", rp.Incomplete(), rp.TrailingRepair())
		}
	})
	t.Run("apply", func(t *testing.T) {
		st := replay(history...).State()
		if err := st.Apply(b); err != nil || st.Version() != 3 || st.LastTx() != 2 || st.Hash() != b.Hash {
			t.Fatalf("apply: %v, version %d tx %d", err, st.Version(), st.LastTx())
		}
		if err := st.Apply(b); err == nil {
			t.Fatal("a repair applied twice")
		}
	})
	bad := []struct {
		name string
		rec  Record
	}{
		{"old value", Record{Key: "services/a", Value: []byte(svc("a"))}},
		{"tombstone of a live key", Record{Key: "services/a"}},
		{"value of a deleted key", Record{Key: "services/b", Value: []byte(svc("b"))}},
	}
	for _, c := range bad {
		t.Run("refuses "+c.name, func(t *testing.T) {
			if _, err := st.Repair([]Record{c.rec}); err == nil {
				t.Fatal("Repair accepted content that is not current")
			}
		})
	}
}

// compact is what Kafka's cleaner leaves of a log when it may clean the
// records before index cleanable (the first uncleanable offset: the active
// segment, or with min.compaction.lag.ms the first segment with a record
// younger than the lag): a record there is removed when a later record of
// its key is also there; tombstones stay (delete.retention.ms).
func compact(log []logRec, cleanable int) []logRec {
	last := map[string]int{}
	for i := 0; i < cleanable && i < len(log); i++ {
		last[log[i].k] = i
	}
	var out []logRec
	for i, r := range log {
		if i < cleanable && last[r.k] != i {
			continue
		}
		out = append(out, r)
	}
	return out
}

// Issue 9, suspected item: "a late stale write becomes permanent if
// compaction cleans it before the repair version". v1 (a, b), v2 (a, c),
// v3 (delete b), then a late copy of v1 from a paused, fenced-out
// instance. The invariant dp.deltas' min.compaction.lag.ms guarantees:
// while the cleaner cannot reach the late copy (it is younger than the
// lag), every rebuild finds the regression and the repair it publishes
// leaves a log whose every compaction rebuilds to the model (version 4,
// tx 3, no b). Without the lag the cleaner may remove v3's only record
// behind the late copy: the rebuild then ends at version 2 / tx 2 with a
// table that is not the model, a hash that does not match, and nothing
// to repair.
func TestLateWriteIsRepairableWhileTheCleanerCannotReachIt(t *testing.T) {
	f := threeVersions(t)
	model := f.st // version 3, tx 3: a@v2, c
	var history []logRec
	for _, b := range f.out {
		history = append(history, batchRecs(b)...)
	}
	late := len(history) // offset of the late copy
	history = append(history, batchRecs(f.out[0])...)

	rebuild := func(log []logRec) *Replayer {
		rp := NewReplayer(false)
		for i, r := range log {
			rp.Add(int64(i), r.k, r.v, r.h)
		}
		return rp
	}
	// the repair an instance publishes after a rebuild of log
	repaired := func(t *testing.T, log []logRec) []logRec {
		t.Helper()
		rp := rebuild(log)
		regs := rp.Regressions()
		if len(regs) == 0 {
			t.Fatalf("no regression found in %d records (version %d, tx %d, hash ok %v)", len(log), rp.State().Version(), rp.State().LastTx(), rp.HashOK())
		}
		recs := make([]Record, len(regs))
		for i, rg := range regs {
			recs[i] = Record{Key: rg.Key, Value: log[rg.Offset].v}
		}
		b, err := rp.State().Repair(recs)
		if err != nil {
			t.Fatal(err)
		}
		return append(append([]logRec{}, log...), batchRecs(b)...)
	}

	for cleanable := 0; cleanable <= late; cleanable++ {
		t.Run(fmt.Sprintf("cleaned below offset %d, then repaired", cleanable), func(t *testing.T) {
			healed := repaired(t, compact(history, cleanable))
			for all := 0; all <= len(healed); all++ {
				rp := rebuild(compact(healed, all))
				st := rp.State()
				if st.Version() != model.Version()+1 || st.LastTx() != model.LastTx() || st.Hash() != model.Hash() ||
					!rp.HashOK() || st.Has("services/b") || len(rp.Regressions()) != 0 {
					t.Fatalf("after compaction below %d: version %d tx %d hash %s (model %s) ok %v, b present %v, regressions %+v",
						all, st.Version(), st.LastTx(), st.Hash(), model.Hash(), rp.HashOK(), st.Has("services/b"), rp.Regressions())
				}
			}
		})
	}

	t.Run("cleaner reached the late copy before the repair", func(t *testing.T) {
		rp := rebuild(compact(history, len(history)))
		st := rp.State()
		// the defect the lag prevents, as it is
		// (behind version 2, the late records are duplicates: the table
		// even loses the live a)
		if st.Version() != 2 || st.LastTx() != 2 || st.Has("services/a") || rp.HashOK() || len(rp.Regressions()) != 0 {
			t.Fatalf("version %d tx %d, a present %v, hash ok %v, regressions %+v", st.Version(), st.LastTx(), st.Has("services/a"), rp.HashOK(), rp.Regressions())
		}
	})
}
