package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/declarative"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
)

// ConfigResult counts the changes of a configuration replace; it is the
// body of POST /config's answer.
type ConfigResult struct {
	Changes   int `json:"changes"` // inserted + updated + deleted
	Deleted   int `json:"deleted"`
	Inserted  int `json:"inserted"`
	Unchanged int `json:"unchanged"`
	Updated   int `json:"updated"`
}

// ReplaceConfig replaces the whole configuration with the declarative one
// in raw (JSON or YAML) in one transaction that writes, and so publishes,
// only the differences (declarative.Plan). Other writes wait for it. 201
// with a ConfigResult; an invalid configuration is a *declarative.Error.
func (a *App) ReplaceConfig(ctx context.Context, k Key, raw []byte) (Reply, error) {
	prog := a.imports.start(a.now())
	r, err := a.write(ctx, k, func(ctx context.Context, tx Tx) (Reply, error) {
		doc, err := declarative.Parse(raw)
		if err != nil {
			return Reply{}, err
		}
		items, err := declarative.Flatten(doc)
		if err != nil {
			return Reply{}, err
		}
		if err := tx.LockConfig(ctx); err != nil {
			return Reply{}, err
		}
		cur := declarative.Current{}
		for _, t := range entity.Types {
			list, err := tx.All(ctx, t)
			if err != nil {
				return Reply{}, err
			}
			cur[t.Name] = make(map[string]map[string]any, len(list))
			for _, e := range list {
				id, err := entity.ID(e)
				if err != nil {
					return Reply{}, err
				}
				cur[t.Name][id] = e
			}
		}
		now := a.now().Unix()
		if err := declarative.Resolve(items, cur, now); err != nil {
			return Reply{}, err
		}
		plan, err := declarative.Plan(cur, items, now)
		if err != nil {
			return Reply{}, err
		}
		var res ConfigResult
		res.Inserted, res.Updated, res.Deleted = plan.Counts()
		res.Unchanged, res.Changes = plan.Unchanged, res.Inserted+res.Updated+res.Deleted
		a.imports.update(prog, func(p *Progress) { p.Phase, p.Rows = "writing", res.Changes })
		if err := a.apply(ctx, tx, plan, prog); err != nil {
			return Reply{}, err
		}
		body, err := json.Marshal(res)
		return Reply{Status: http.StatusCreated, Body: body}, err
	})
	a.imports.update(prog, func(p *Progress) {
		p.Finished, p.Tx = a.now(), r.Tx
		switch {
		case err != nil:
			p.Phase, p.Err = "failed", err.Error()
		case r.Tx == 0:
			p.Phase = "unchanged"
		default:
			p.Phase = "committed"
		}
	})
	p := a.imports.snapshot(prog)
	a.imports.logger().Info("declarative import "+p.Phase, "import", prog.ID, "rows", p.Rows, "tx", p.Tx,
		"took", p.Finished.Sub(p.Started).Round(time.Millisecond), "err", p.Err)
	return r, err
}

// apply writes the changes: parents' upserts first, then children's
// deletes first, importChunk entities a statement, advancing prog and
// logging it at most every second.
func (a *App) apply(ctx context.Context, tx Tx, c declarative.Changes, prog *Progress) error {
	last := a.now()
	done := func(n int) {
		a.imports.update(prog, func(p *Progress) { p.RowsWritten += n })
		if now := a.now(); now.Sub(last) >= time.Second {
			last = now
			p := a.imports.snapshot(prog)
			a.imports.logger().Info("declarative import writing", "import", prog.ID, "rows_written", p.RowsWritten, "rows", p.Rows)
		}
	}
	for _, u := range c.Upserts {
		for i := 0; i < len(u.Update); i += importChunk {
			part := u.Update[i:min(i+importChunk, len(u.Update))]
			if err := tx.UpdateMany(ctx, u.Type, part); err != nil {
				return declarativeStoreError(u.Type.Name, err)
			}
			done(len(part))
		}
		for i := 0; i < len(u.Insert); i += importChunk {
			j := min(i+importChunk, len(u.Insert))
			if err := tx.InsertMany(ctx, u.Type, u.Insert[i:j], u.Bodies[i:j]); err != nil {
				return declarativeStoreError(u.Type.Name, err)
			}
			done(j - i)
		}
	}
	for _, d := range c.Deletes {
		for i := 0; i < len(d.IDs); i += importChunk {
			part := d.IDs[i:min(i+importChunk, len(d.IDs))]
			if err := tx.DeleteMany(ctx, d.Type, part); err != nil {
				return err
			}
			done(len(part))
		}
	}
	return nil
}

// ExportConfig writes the stored configuration to w as a declarative
// document (declarative.Exporter: YAML, entity by entity as they are read
// from one snapshot of the store), without holding it in memory.
func (a *App) ExportConfig(ctx context.Context, w io.Writer) error {
	x, err := declarative.NewExporter(w)
	if err != nil {
		return err
	}
	return a.store.Export(ctx, entity.Types, x.Add)
}

// declarativeStoreError reports a constraint violation against the
// declared type that caused it.
func declarativeStoreError(path string, err error) error {
	var ue *store.UniqueError
	var fe *store.ForeignKeyError
	var se entity.Errors
	switch {
	case errors.As(err, &ue):
		return &declarative.Error{Fields: map[string]any{path: ue.Error()}}
	case errors.As(err, &fe):
		return &declarative.Error{Fields: map[string]any{path: fe.Error()}}
	case errors.As(err, &se):
		return &declarative.Error{Fields: map[string]any{path: se}}
	}
	return err
}
