package declarative

import (
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
	r := NewResolver(IndexOf(cur), now)
	var u *Upsert
	for _, it := range items {
		t := it.Type
		out, e, b, err := r.Plan(it)
		if err != nil {
			return Changes{}, err
		}
		if out == Unchanged {
			c.Unchanged++
			continue
		}
		if u == nil || u.Type != t {
			c.Upserts = append(c.Upserts, Upsert{Type: t})
			u = &c.Upserts[len(c.Upserts)-1]
		}
		if out == Update {
			u.Update = append(u.Update, e)
		} else {
			u.Insert = append(u.Insert, e)
			u.Bodies = append(u.Bodies, b)
		}
	}
	c.Deletes = r.idx.Undeclared()
	return c, nil
}
