package store

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/shared/wire"
	bolt "go.etcd.io/bbolt"
)

func storedEntities(t *testing.T, s *Bolt) map[string]string {
	t.Helper()
	out := map[string]string{}
	if err := s.ForEach(func(k string, v []byte) error {
		out[k] = string(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// bigValue is a value large enough that a few hundred of them fill
// several of a Replacement's chunks.
func bigValue(i int) []byte {
	return fmt.Appendf(nil, `{"id":"%d","pad":"%s"}`, i, strings.Repeat("p", 32<<10))
}

// A resync that crashes after some of its chunks were written (the
// process dies: the store is closed without Commit or Abort) leaves the
// configuration and position stored before it, whole; the next Open drops
// the staged part, and a later replacement goes through.
func TestReplacementCrashKeepsTheOldConfiguration(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	old := Meta{Version: 3, Hash: 33, NextOffset: 9, Complete: true, Topic: "t"}
	if err := s.Replace(map[string][]byte{"services/a": []byte(`{"id":"a"}`), "services/z": []byte(`{"id":"z"}`)}, old); err != nil {
		t.Fatal(err)
	}
	rep, err := s.BeginReplace()
	if err != nil {
		t.Fatal(err)
	}
	const n = 500 // 16 MB: four chunks or more
	for i := range n {
		if err := rep.Put(fmt.Sprintf("services/n%04d", i), bigValue(i)); err != nil {
			t.Fatal(err)
		}
	}
	if rep.Chunks() < 3 {
		t.Fatalf("%d chunks written before the crash, want several", rep.Chunks())
	}
	s.Close() // the crash

	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := storedEntities(t, s); len(got) != 2 || got["services/a"] != `{"id":"a"}` || got["services/z"] != `{"id":"z"}` {
		t.Fatalf("after the crash the store holds %d entities, want the 2 of the old configuration", len(got))
	}
	if m, _ := s.Meta(); m.Version != 3 || m.Hash != 33 || m.NextOffset != 9 {
		t.Fatalf("after the crash the position is %+v, want %+v", m, old)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketStaging) != nil {
			return fmt.Errorf("the staged part of the crashed resync is still there")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	rep, err = s.BeginReplace()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"services/b", "services/c"} {
		if err := rep.Put(k, []byte(`{"id":"`+k+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	next := Meta{Version: 4, Hash: wire.Hash(44), NextOffset: 12, Complete: true, Topic: "t"}
	if err := rep.Commit(next); err != nil {
		t.Fatal(err)
	}
	got := storedEntities(t, s)
	if len(got) != 2 || got["services/b"] == "" || got["services/c"] == "" {
		t.Fatalf("after the replacement the store holds %v, want b and c only", got)
	}
	if m, _ := s.Meta(); m.Version != 4 || m.NextOffset != 12 {
		t.Fatalf("position %+v, want %+v", m, next)
	}
}

// A replacement written in many chunks holds at most one chunk in memory
// and gives back exactly what was put; an aborted one changes nothing;
// keys out of order are refused.
func TestReplacementChunks(t *testing.T) {
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rep, err := s.BeginReplace()
	if err != nil {
		t.Fatal(err)
	}
	const n = 600
	for i := range n {
		if err := rep.Put(fmt.Sprintf("services/%04d", i), bigValue(i)); err != nil {
			t.Fatal(err)
		}
		if held := len(rep.keys); held*len(bigValue(i)) > replaceChunk+len(bigValue(i)) {
			t.Fatalf("the replacement holds %d entities (%d bytes), more than a chunk", held, held*len(bigValue(i)))
		}
	}
	if err := rep.Commit(Meta{Version: 1, Complete: true}); err != nil {
		t.Fatal(err)
	}
	if rep.Chunks() < n*len(bigValue(0))/replaceChunk {
		t.Fatalf("%d chunks for %d bytes", rep.Chunks(), n*len(bigValue(0)))
	}
	got := storedEntities(t, s)
	for i := range n {
		if v := got[fmt.Sprintf("services/%04d", i)]; !bytes.Equal([]byte(v), bigValue(i)) {
			t.Fatalf("entity %d differs", i)
		}
	}
	if len(got) != n {
		t.Fatalf("%d entities, want %d", len(got), n)
	}

	rep, err = s.BeginReplace()
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Put("services/b", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := rep.Put("services/a", []byte(`{}`)); err == nil {
		t.Fatal("a key below the previous one was accepted")
	}
	if err := rep.Abort(); err != nil {
		t.Fatal(err)
	}
	if got := storedEntities(t, s); len(got) != n {
		t.Fatalf("an aborted replacement left %d entities, want %d", len(got), n)
	}
}

// A spool gives back what was put, whether or not it was flushed to the
// file yet.
func TestSpool(t *testing.T) {
	s, err := Open(t.TempDir(), Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sp, err := s.NewSpool()
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var pos []int64
	for i := range 100 {
		p, err := sp.Put(bigValue(i))
		if err != nil {
			t.Fatal(err)
		}
		pos = append(pos, p)
		if i%7 == 0 {
			v, err := sp.Get(p, len(bigValue(i)))
			if err != nil || !bytes.Equal(v, bigValue(i)) {
				t.Fatalf("get %d right after put: %v", i, err)
			}
		}
	}
	for i := 99; i >= 0; i-- {
		v, err := sp.Get(pos[i], len(bigValue(i)))
		if err != nil || !bytes.Equal(v, bigValue(i)) {
			t.Fatalf("get %d: %v", i, err)
		}
	}
}
