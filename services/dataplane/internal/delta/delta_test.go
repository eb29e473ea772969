package delta

import (
	"testing"

	"github.com/deltaplane/deltaplane/shared/wire"
)

func rec(version uint64, index, count int, key string) Record {
	return Record{Key: key, Value: []byte(`{}`), Header: wire.DeltaHeader{Schema: 1, Version: version, Index: index, Count: count}}
}

func TestAssembler(t *testing.T) {
	type step struct {
		r    Record
		want Outcome
		keys []string // batch keys on Complete
	}
	cases := []struct {
		name    string
		applied uint64
		steps   []step
		final   uint64
	}{
		{"single record batch", 0, []step{{rec(1, 0, 1, "a"), Complete, []string{"a"}}}, 1},
		{"multi record batch completes on last index", 3, []step{
			{rec(4, 0, 3, "a"), Buffered, nil},
			{rec(4, 1, 3, "b"), Buffered, nil},
			{rec(4, 2, 3, "c"), Complete, []string{"a", "b", "c"}},
		}, 4},
		{"duplicate of applied version", 5, []step{{rec(5, 0, 1, "a"), Duplicate, nil}, {rec(2, 0, 1, "a"), Duplicate, nil}}, 5},
		{"gap: version skipped", 5, []step{{rec(7, 0, 1, "a"), Gap, nil}}, 5},
		{"repeated index ignored", 0, []step{
			{rec(1, 0, 2, "a"), Buffered, nil},
			{rec(1, 0, 2, "a2"), Buffered, nil}, // index 0 restarts the batch
			{rec(1, 1, 2, "b"), Complete, []string{"a2", "b"}},
		}, 1},
		{"repeated non-zero index", 0, []step{
			{rec(1, 0, 3, "a"), Buffered, nil},
			{rec(1, 1, 3, "b"), Buffered, nil},
			{rec(1, 1, 3, "b"), Repeated, nil},
			{rec(1, 2, 3, "c"), Complete, []string{"a", "b", "c"}},
		}, 1},
		{"last index with a hole is a gap", 0, []step{
			{rec(1, 0, 3, "a"), Buffered, nil},
			{rec(1, 2, 3, "c"), Gap, nil},
		}, 0},
		{"batch starting mid-way (compacted head) is a gap", 0, []step{
			{rec(1, 1, 3, "b"), Buffered, nil},
			{rec(2, 0, 1, "c"), Gap, nil},
		}, 0},
		{"count changes inside a batch", 0, []step{
			{rec(1, 0, 3, "a"), Buffered, nil},
			{rec(1, 1, 2, "b"), Gap, nil},
		}, 0},
		{"consecutive batches", 0, []step{
			{rec(1, 0, 1, "a"), Complete, []string{"a"}},
			{rec(1, 0, 1, "a"), Duplicate, nil},
			{rec(2, 0, 2, "b"), Buffered, nil},
			{rec(2, 1, 2, "c"), Complete, []string{"b", "c"}},
		}, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := NewAssembler(c.applied)
			for i, s := range c.steps {
				got, batch := a.Add(s.r)
				if got != s.want {
					t.Fatalf("step %d: outcome %s, want %s", i, got, s.want)
				}
				if got == Complete {
					if len(batch) != len(s.keys) {
						t.Fatalf("step %d: batch of %d, want %d", i, len(batch), len(s.keys))
					}
					for j, k := range s.keys {
						if batch[j].Key != k {
							t.Fatalf("step %d: batch[%d] = %s, want %s", i, j, batch[j].Key, k)
						}
					}
				} else if batch != nil {
					t.Fatalf("step %d: batch returned with outcome %s", i, got)
				}
			}
			if a.Applied() != c.final {
				t.Fatalf("applied = %d, want %d", a.Applied(), c.final)
			}
		})
	}
}

func TestResetDropsBuffer(t *testing.T) {
	a := NewAssembler(0)
	a.Add(rec(1, 0, 2, "a"))
	a.Reset(9)
	if a.Pending() != 0 || a.Applied() != 9 {
		t.Fatalf("after reset pending=%d applied=%d", a.Pending(), a.Applied())
	}
	if got, _ := a.Add(rec(10, 0, 1, "b")); got != Complete {
		t.Fatalf("outcome %s, want complete", got)
	}
}
