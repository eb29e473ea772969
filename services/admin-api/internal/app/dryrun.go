package app

import (
	"context"
	"maps"
	"reflect"
	"slices"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/declarative"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// Preview is what a declarative import would change (POST
// /config?dry_run=true): the body of its answer.
type Preview struct {
	DryRun    bool           `json:"dry_run"`
	Creates   []PreviewItem  `json:"creates"`
	Updates   []PreviewItem  `json:"updates"`
	Deletes   []PreviewItem  `json:"deletes"`
	Unchanged int            `json:"unchanged"`
	Counts    ConfigResult   `json:"counts"`
	Delta     PreviewDelta   `json:"delta"`
	Cascades  map[string]int `json:"cascades"` // deletes caused by a deleted parent, per type
}

// PreviewItem is one entity a preview would create, update or delete.
type PreviewItem struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Name string `json:"name,omitempty"` // its endpoint key (name, username, ...) when it has one
	// Fields are an update's changed top-level fields (updated_at aside).
	Fields []string `json:"fields,omitempty"`
	// CascadeFrom is, for a delete, the deleted parent ("services/<id>")
	// that takes it along; empty when it is deleted for itself.
	CascadeFrom string `json:"cascade_from,omitempty"`
}

// PreviewDelta is what the import would send to every data plane: one
// version on dp.deltas of Records records, Bytes bytes of keys, values
// and dp-* headers (version and tx counted at 10 digits).
type PreviewDelta struct {
	Versions int `json:"versions"`
	Records  int `json:"records"`
	Bytes    int `json:"bytes"`
}

// PreviewConfig computes what ReplaceConfig would do with raw, reading the
// stored configuration outside a transaction and writing nothing (no row,
// no outbox row, so nothing is published). It finds what declarative.Plan
// finds (invalid entities, references that do not resolve); a uniqueness
// conflict that only Postgres detects is found by the import itself.
func (a *App) PreviewConfig(ctx context.Context, raw []byte) (Preview, error) {
	items, err := declarative.Read(raw)
	if err != nil {
		return Preview{}, err
	}
	cur := declarative.Current{}
	for _, t := range entity.Types {
		list, err := a.store.All(ctx, t)
		if err != nil {
			return Preview{}, err
		}
		cur[t.Name] = make(map[string]map[string]any, len(list))
		for _, e := range list {
			id, err := entity.ID(e)
			if err != nil {
				return Preview{}, err
			}
			cur[t.Name][id] = e
		}
	}
	now := a.now().Unix()
	if err := declarative.Resolve(items, cur, now); err != nil {
		return Preview{}, err
	}
	plan, err := declarative.Plan(cur, items, now)
	if err != nil {
		return Preview{}, err
	}
	p := Preview{DryRun: true, Creates: []PreviewItem{}, Updates: []PreviewItem{}, Deletes: []PreviewItem{}, Unchanged: plan.Unchanged, Cascades: map[string]int{}}
	var values [][2][]byte // key, value (nil: tombstone)
	for _, u := range plan.Upserts {
		for i, e := range u.Insert {
			id, _ := entity.ID(e)
			p.Creates = append(p.Creates, PreviewItem{Type: u.Type.Name, ID: id, Name: endpointKey(u.Type, e)})
			values = append(values, [2][]byte{[]byte(wire.Key(u.Type.Name, id)), u.Bodies[i]})
		}
		for _, e := range u.Update {
			id, _ := entity.ID(e)
			p.Updates = append(p.Updates, PreviewItem{Type: u.Type.Name, ID: id, Name: endpointKey(u.Type, e), Fields: changedFields(cur[u.Type.Name][id], e)})
			b, err := entity.Canonical(e)
			if err != nil {
				return Preview{}, err
			}
			values = append(values, [2][]byte{[]byte(wire.Key(u.Type.Name, id)), b})
		}
	}
	deleted := map[string]bool{}
	for _, d := range plan.Deletes {
		for _, id := range d.IDs {
			deleted[wire.Key(d.Type.Name, id)] = true
		}
	}
	for _, d := range plan.Deletes {
		for _, id := range d.IDs {
			e := cur[d.Type.Name][id]
			it := PreviewItem{Type: d.Type.Name, ID: id, Name: endpointKey(d.Type, e)}
			for _, f := range d.Type.Foreigns() {
				ref, _ := e[f.Name].(map[string]any)
				pid, _ := ref["id"].(string)
				if k := wire.Key(f.Ref.To, pid); pid != "" && deleted[k] {
					it.CascadeFrom = k
					p.Cascades[d.Type.Name]++
					break
				}
			}
			p.Deletes = append(p.Deletes, it)
			values = append(values, [2][]byte{[]byte(wire.Key(d.Type.Name, id)), nil})
		}
	}
	p.Counts.Inserted, p.Counts.Updated, p.Counts.Deleted = plan.Counts()
	p.Counts.Unchanged, p.Counts.Changes = plan.Unchanged, p.Counts.Inserted+p.Counts.Updated+p.Counts.Deleted
	if n := len(values); n > 0 {
		p.Delta = PreviewDelta{Versions: 1, Records: n}
		for i, kv := range values {
			h := wire.DeltaHeader{Schema: wire.SchemaVersion, Version: 1_000_000_000, Index: i, Count: n, Hash: 1, Tx: 1_000_000_000}
			p.Delta.Bytes += len(kv[0]) + len(kv[1])
			for _, hd := range h.Headers() {
				p.Delta.Bytes += len(hd.Key) + len(hd.Value)
			}
		}
	}
	return p, nil
}

// endpointKey is e's endpoint key (a service's name), "" when none.
func endpointKey(t *entity.Type, e map[string]any) string {
	if t.Endpoint == "" {
		return ""
	}
	s, _ := e[t.Endpoint].(string)
	return s
}

// changedFields lists the top-level fields whose values differ between
// old and new, updated_at aside, sorted.
func changedFields(old, new map[string]any) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(new)) {
		if k == "updated_at" {
			continue
		}
		if !reflect.DeepEqual(canonicalValue(old[k]), canonicalValue(new[k])) {
			out = append(out, k)
		}
	}
	for k := range old {
		if _, ok := new[k]; !ok && k != "updated_at" {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// canonicalValue compares values of different Go types that encode alike
// (an int64 and a json.Number).
func canonicalValue(v any) string {
	b, err := entity.Canonical(map[string]any{"v": v})
	if err != nil {
		return ""
	}
	return string(b)
}
