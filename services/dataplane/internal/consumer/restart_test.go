package consumer

import (
	"bytes"
	"io"
	"log/slog"
	"testing"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/rebuild"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
)

// A data plane restarted on a store that a streamed resync wrote serves
// the stored configuration at once: ready, the stored version, every
// entity, and the content hash the topic's records carried. 10,000
// entities: more than two of the builder's chunks, indexed as read.
func TestRestartServesTheStoredHash(t *testing.T) {
	recs, _ := benchLog(10000)
	dir := t.TempDir()
	st, err := store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := st.NewSpool()
	if err != nil {
		t.Fatal(err)
	}
	tb := rebuild.NewSpilled(sp)
	for i, r := range recs {
		tb.Add(r.h, int64(i), r.key, r.value)
	}
	res := tb.Result()
	snap, errs, rep, err := stage(st, res)
	if err != nil || len(errs) > 0 {
		t.Fatal(err, errs)
	}
	res.Close()
	if snap.Hash != res.Hash || snap.Len() != len(recs) {
		t.Fatalf("resync built %d entities hashing to %s, want %d and %s", snap.Len(), snap.Hash, len(recs), res.Hash)
	}
	if err := rep.Commit(store.Meta{Version: res.Version, Hash: snap.Hash, NextOffset: int64(len(recs)), Complete: true, Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st, err = store.Open(dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := New(Config{Brokers: []string{"127.0.0.1:1"}, Topic: "t", Group: "g", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
	if err != nil {
		t.Fatal(err)
	}
	got := c.Snapshot()
	if !c.Ready() || got.Version != res.Version || got.Hash != res.Hash || got.Len() != len(recs) {
		t.Fatalf("restarted: ready %v, version %d, hash %s, %d entities; want version %d, hash %s, %d entities",
			c.Ready(), got.Version, got.Hash, got.Len(), res.Version, res.Hash, len(recs))
	}
	if c.loadProblem != "" {
		t.Fatalf("restart found a problem: %s", c.loadProblem)
	}
	n := 0
	if err := st.ForEach(func(k string, v []byte) error {
		n++
		if e, ok := got.Entity(k); !ok || !bytes.Equal(e, v) {
			t.Fatalf("%s served as %q (%v), stored %q", k, e, ok, v)
		}
		return nil
	}); err != nil || n != len(recs) {
		t.Fatalf("store: %d entities, %v", n, err)
	}
}
