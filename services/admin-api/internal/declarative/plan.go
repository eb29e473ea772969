package declarative

import (
	"bytes"
	"fmt"
	"maps"
	"sort"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
)

// Changes turn a stored configuration into a declared one.
type Changes struct {
	// Upserts per type, parents first (entity.Types order); types without
	// inserts or updates are left out.
	Upserts []Upsert
	// Deletes per type, children first (reverse entity.Types order), ids
	// sorted; types without deletes are left out. A stored entity that the
	// configuration does not declare is deleted, so are the children of a
	// deleted parent (they cannot be declared: their reference would not
	// resolve), before the parent.
	Deletes []Deletion
	// Unchanged counts the declared entities stored exactly so.
	Unchanged int
}

// Upsert is the inserts and updates of one type.
type Upsert struct {
	Type   *entity.Type
	Insert []map[string]any
	Bodies [][]byte // canonical JSON of each of Insert
	Update []map[string]any
}

// Deletion is the deletes of one type.
type Deletion struct {
	Type *entity.Type
	IDs  []string
}

// Counts returns how many entities the changes insert, update and delete.
func (c Changes) Counts() (inserted, updated, deleted int) {
	for _, u := range c.Upserts {
		inserted += len(u.Insert)
		updated += len(u.Update)
	}
	for _, d := range c.Deletes {
		deleted += len(d.IDs)
	}
	return inserted, updated, deleted
}

// Plan computes the changes that turn cur (the stored configuration) into
// the declared items (resolved, see Resolve): an item whose id is not
// stored is inserted; one stored with other content is updated, its
// updated_at set to now; one stored exactly so (canonical JSON) is
// unchanged; a stored entity that no item declares is deleted. Plan reads
// and changes neither cur nor items.
func Plan(cur Current, items []*Item, now int64) (Changes, error) {
	var c Changes
	declared := map[string]map[string]bool{}
	var u *Upsert
	for _, it := range items {
		t := it.Type
		if it.Entity == nil {
			return Changes{}, fmt.Errorf("plan: %s is not resolved", it.Path)
		}
		if declared[t.Name] == nil {
			declared[t.Name] = map[string]bool{}
		}
		declared[t.Name][it.ID] = true
		b, err := entity.Canonical(it.Entity)
		if err != nil {
			return Changes{}, fmt.Errorf("plan: %s: %w", it.Path, err)
		}
		var old []byte
		stored, exists := cur[t.Name][it.ID]
		if exists {
			if old, err = entity.Canonical(stored); err != nil {
				return Changes{}, fmt.Errorf("plan: stored %s %s: %w", t.Name, it.ID, err)
			}
			if bytes.Equal(old, b) {
				c.Unchanged++
				continue
			}
		}
		if u == nil || u.Type != t {
			c.Upserts = append(c.Upserts, Upsert{Type: t})
			u = &c.Upserts[len(c.Upserts)-1]
		}
		if exists {
			e := maps.Clone(it.Entity)
			e["updated_at"] = now
			u.Update = append(u.Update, e)
		} else {
			u.Insert = append(u.Insert, it.Entity)
			u.Bodies = append(u.Bodies, b)
		}
	}
	for i := len(entity.Types) - 1; i >= 0; i-- {
		t := entity.Types[i]
		var gone []string
		for id := range cur[t.Name] {
			if !declared[t.Name][id] {
				gone = append(gone, id)
			}
		}
		if len(gone) > 0 {
			sort.Strings(gone)
			c.Deletes = append(c.Deletes, Deletion{Type: t, IDs: gone})
		}
	}
	return c, nil
}
