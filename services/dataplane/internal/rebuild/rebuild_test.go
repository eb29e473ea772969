package rebuild

import (
	"maps"
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
			for k, v := range r.Entities {
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
