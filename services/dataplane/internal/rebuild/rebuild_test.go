package rebuild

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/shared/wire"
)

// rec is one record of a test log: version v, index i of n, key, value
// ("" is a tombstone); the hash on the header is hashes[v].
type rec struct {
	v    uint64
	i, n int
	key  string
	val  string
}

// play runs records through a table the way a producer would have
// written them: each version's hash is the hash of the state after it,
// computed from the records in version order.
func play(t *testing.T, log []rec) (*Table, map[uint64]wire.Hash) {
	t.Helper()
	// The producer's states by version, from the records in version order
	// (each version's records once).
	byVersion := map[uint64][]rec{}
	var maxV uint64
	for _, r := range log {
		dup := false
		for _, o := range byVersion[r.v] {
			if o.i == r.i {
				dup = true
			}
		}
		if !dup {
			byVersion[r.v] = append(byVersion[r.v], r)
		}
		maxV = max(maxV, r.v)
	}
	hashes := map[uint64]wire.Hash{}
	state := map[string]string{}
	for v := uint64(1); v <= maxV; v++ {
		for _, r := range byVersion[v] {
			delete(state, r.key)
			if r.val != "" {
				state[r.key] = r.val
			}
		}
		var h wire.Hash
		for k, val := range state {
			h = h.Add(wire.EntityHash(k, []byte(val)))
		}
		hashes[v] = h
	}
	tb := New()
	for off, r := range log {
		var val []byte
		if r.val != "" {
			val = []byte(r.val)
		}
		tb.Add(wire.DeltaHeader{Schema: wire.SchemaVersion, Version: r.v, Index: r.i, Count: r.n, Hash: hashes[r.v], Tx: r.v}, int64(off), r.key, val)
	}
	return tb, hashes
}

func TestTable(t *testing.T) {
	cases := []struct {
		name    string
		log     []rec
		version uint64
		want    map[string]string
		resume  int64 // -1: none
	}{
		{"empty log", nil, 0, map[string]string{}, -1},
		{"one batch", []rec{{1, 0, 2, "a", "1"}, {1, 1, 2, "b", "1"}}, 1, map[string]string{"a": "1", "b": "1"}, -1},
		{"later version overwrites", []rec{{1, 0, 1, "a", "1"}, {2, 0, 1, "a", "2"}}, 2, map[string]string{"a": "2"}, -1},
		{"tombstone deletes", []rec{{1, 0, 2, "a", "1"}, {1, 1, 2, "b", "1"}, {2, 0, 1, "a", ""}}, 2, map[string]string{"b": "1"}, -1},
		{
			"late copy of an older version loses to the tombstone of a newer one",
			[]rec{{1, 0, 2, "x", "1"}, {1, 1, 2, "y", "1"}, {2, 0, 1, "x", "2"}, {3, 0, 1, "x", ""}, {2, 0, 1, "x", "2"}},
			3, map[string]string{"y": "1"}, -1,
		},
		{
			"late copy of an older value loses to a newer value",
			[]rec{{1, 0, 1, "x", "1"}, {2, 0, 1, "x", "2"}, {1, 0, 1, "x", "1"}},
			2, map[string]string{"x": "2"}, -1,
		},
		{
			"incomplete tail batch takes no part",
			[]rec{{1, 0, 1, "a", "1"}, {2, 0, 2, "a", "2"}},
			1, map[string]string{"a": "1"}, 1,
		},
		{
			"incomplete tail batch that deletes takes no part",
			[]rec{{1, 0, 2, "a", "1"}, {1, 1, 2, "b", "1"}, {2, 0, 3, "a", ""}, {2, 1, 3, "c", "2"}},
			1, map[string]string{"a": "1", "b": "1"}, 2,
		},
		{
			"compacted history: older versions partial, newest complete",
			[]rec{{1, 2, 3, "c", "1"}, {2, 0, 1, "a", "2"}, {3, 0, 1, "b", ""}, {4, 0, 1, "d", "4"}},
			4, map[string]string{"a": "2", "c": "1", "d": "4"}, -1,
		},
		{
			"batch completed after being restarted by a resend",
			[]rec{{1, 0, 2, "a", "1"}, {1, 0, 2, "a", "1"}, {1, 1, 2, "b", "1"}},
			1, map[string]string{"a": "1", "b": "1"}, -1,
		},
		{
			"no complete version",
			[]rec{{1, 0, 2, "a", "1"}},
			0, map[string]string{}, 0,
		},
		{
			"version with a hole is not complete",
			[]rec{{1, 0, 1, "a", "1"}, {2, 0, 3, "b", "2"}, {2, 2, 3, "c", "2"}},
			1, map[string]string{"a": "1"}, 1,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb, hashes := play(t, c.log)
			r := tb.Result()
			if r.Version != c.version {
				t.Fatalf("version %d, want %d", r.Version, c.version)
			}
			got := map[string]string{}
			var h wire.Hash
			ents, err := r.Entities()
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range ents {
				got[k] = string(v)
				h = h.Add(wire.EntityHash(k, v))
			}
			if !maps.Equal(got, c.want) {
				t.Fatalf("entities %v, want %v", got, c.want)
			}
			if r.Hash != hashes[c.version] || h != r.Hash {
				t.Fatalf("result hash %s, entities hash to %s, want %s", r.Hash, h, hashes[c.version])
			}
			off, ok := tb.Resume(r.Version)
			if !ok {
				off = -1
			}
			if off != c.resume {
				t.Fatalf("resume %d, want %d", off, c.resume)
			}
		})
	}
}

func TestResumeAboveAHigherVersion(t *testing.T) {
	tb, _ := play(t, []rec{{1, 0, 1, "a", "1"}, {2, 0, 2, "a", "2"}, {3, 0, 2, "b", "3"}})
	if off, ok := tb.Resume(2); !ok || off != 2 {
		t.Fatalf("resume after 2 = %d %v, want 2", off, ok)
	}
	if _, ok := tb.Resume(3); ok {
		t.Fatal("resume after 3 found a record")
	}
}

// arena is a Spill that copies values into one buffer (as the store's
// file spool does) and counts what it holds.
type arena struct{ buf []byte }

func (a *arena) Put(v []byte) (int64, error) {
	pos := int64(len(a.buf))
	a.buf = append(a.buf, v...)
	return pos, nil
}

func (a *arena) Get(pos int64, n int) ([]byte, error) {
	return bytes.Clone(a.buf[pos : pos+int64(n)]), nil
}

// A spilled table keeps no value of its own: every value goes to the
// spill as it is added, and the result reads it back from there, so the
// buffers the records came in (kafka-go's fetched bytes) can be reused or
// collected at once. The test overwrites each record's buffer right after
// Add; a table that kept the caller's slices would return the garbage.
func TestSpilledTableKeepsNoValue(t *testing.T) {
	sp := &arena{}
	tb := NewSpilled(sp)
	const n = 1000
	want := map[string]string{}
	var h wire.Hash
	for i := range n {
		key, val := fmt.Sprintf("services/%04d", i), fmt.Sprintf(`{"id":"%04d","pad":"%s"}`, i, strings.Repeat("x", 100))
		want[key] = val
		h = h.Add(wire.EntityHash(key, []byte(val)))
	}
	i := 0
	for key := range want {
		buf := []byte(want[key])
		tb.Add(wire.DeltaHeader{Schema: wire.SchemaVersion, Version: 1, Index: i, Count: n, Hash: h}, int64(i), key, buf)
		for j := range buf {
			buf[j] = '#'
		}
		i++
	}
	r := tb.Result()
	if r.Version != 1 || r.Hash != h || r.Len != n {
		t.Fatalf("result version %d hash %s len %d", r.Version, r.Hash, r.Len)
	}
	var last string
	var got wire.Hash
	err := r.Each(func(k string, v []byte) error {
		if k <= last {
			t.Fatalf("key %s after %s: not in key order", k, last)
		}
		last = k
		if string(v) != want[k] {
			t.Fatalf("%s = %.40q, want %.40q", k, v, want[k])
		}
		got = got.Add(wire.EntityHash(k, v))
		return nil
	})
	if err != nil || got != h {
		t.Fatalf("each: %v, hash %s want %s", err, got, h)
	}
	if size := len(sp.buf); size < n*100 {
		t.Fatalf("spill holds %d bytes, want every value", size)
	}
}

// failing is a Spill whose disk is full.
type failing struct{}

func (failing) Put([]byte) (int64, error)      { return 0, errors.New("disk full") }
func (failing) Get(int64, int) ([]byte, error) { return nil, errors.New("disk full") }

// A spill that fails makes the result fail, never a configuration with
// values missing.
func TestSpillErrorFailsTheResult(t *testing.T) {
	tb := NewSpilled(failing{})
	tb.Add(wire.DeltaHeader{Schema: wire.SchemaVersion, Version: 1, Index: 0, Count: 1}, 0, "services/a", []byte(`{}`))
	if err := tb.Result().Each(func(string, []byte) error { return nil }); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("each = %v, want the spill's error", err)
	}
}
