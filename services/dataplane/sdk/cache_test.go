package sdk

import (
	"fmt"
	"testing"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
)

// TestChangedRecordIsBounded: the record of the last change per entity
// key (which keeps a value loaded from an older snapshot out of the cache)
// does not grow with every entity ever changed; once it is forgotten,
// values loaded from snapshots older than the change are not kept, and
// values from the newest snapshot still are.
func TestChangedRecordIsBounded(t *testing.T) {
	c := newCache(true)
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = fmt.Sprintf("routes/r%05d", i)
	}
	c.invalidate(2, keys...)
	if n := len(c.changed); n > maxChanged {
		t.Fatalf("%d keys remembered after one batch of %d changes, want at most %d", n, len(keys), maxChanged)
	}
	old, cur := snapshot.Empty(), snapshot.Empty()
	old.Seq, cur.Seq = 1, 2
	load := func(v *View) (any, error) { v.Entity("routes", "r00042"); return 1, nil }
	if _, err := c.get(old, "from-old", load); err != nil || c.len() != 0 {
		t.Fatalf("value from the snapshot before the change kept (%d values)", c.len())
	}
	if _, err := c.get(cur, "from-current", load); err != nil || c.len() != 1 {
		t.Fatalf("value from the current snapshot not kept (%d values)", c.len())
	}
	c.invalidate(3, "routes/r00042")
	if c.len() != 0 {
		t.Fatal("value not dropped when its entity changed")
	}
}
