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
// only the differences (declarative.Plan's). Other writes wait for it. 201
// with a ConfigResult; an invalid configuration is a *declarative.Error.
//
// Memory: the stored configuration is read row by row into a
// declarative.Index (no entity maps kept); the declared entities are
// resolved, planned and written one chunk at a time (importWriter), each
// item's maps dropped once planned, so the entities held as maps at once
// are bounded by importChunk, not by the configuration (rows waiting to be
// written keep only their JSON).
func (a *App) ReplaceConfig(ctx context.Context, k Key, raw []byte) (Reply, error) {
	prog := a.imports.start(a.now())
	r, err := a.write(ctx, k, func(ctx context.Context, tx Tx) (Reply, error) {
		items, err := declarative.Read(raw)
		if err != nil {
			return Reply{}, err
		}
		if err := tx.LockConfig(ctx); err != nil {
			return Reply{}, err
		}
		idx := declarative.NewIndex()
		for _, t := range entity.Types {
			if err := tx.Each(ctx, t, func(e map[string]any) error { return idx.Add(t, e) }); err != nil {
				return Reply{}, err
			}
		}
		now := a.now().Unix()
		res, err := a.importItems(ctx, tx, items, idx, now, prog)
		if err != nil {
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

// importItems resolves, plans and writes the declared items in order
// (parents first; declarative.Resolver.Each, which drops each item's maps
// once planned), then deletes what they do not declare (children first).
// Every item is resolved, so an invalid configuration reports all its
// errors (writes stop at the first; the transaction rolls back).
func (a *App) importItems(ctx context.Context, tx Tx, items []*declarative.Item, idx *declarative.Index, now int64, prog *Progress) (ConfigResult, error) {
	var res ConfigResult
	w := &importWriter{a: a, tx: tx, prog: prog, last: a.now()}
	err := declarative.NewResolver(idx, now).Each(items, func(it *declarative.Item, out declarative.Outcome, e map[string]any, body []byte) error {
		switch out {
		case declarative.Insert:
			res.Inserted++
			return w.add(ctx, it.Type, e, body, false)
		case declarative.Update:
			res.Updated++
			return w.add(ctx, it.Type, e, body, true)
		}
		res.Unchanged++
		return nil
	})
	if err != nil {
		return res, err
	}
	if err := w.endType(ctx); err != nil {
		return res, err
	}
	for _, d := range idx.Undeclared() {
		res.Deleted += len(d.IDs)
		w.planned(len(d.IDs))
		for i := 0; i < len(d.IDs); i += importChunk {
			part := d.IDs[i:min(i+importChunk, len(d.IDs))]
			if err := tx.DeleteMany(ctx, d.Type, part); err != nil {
				return res, err
			}
			w.done(len(part))
		}
	}
	res.Changes = res.Inserted + res.Updated + res.Deleted
	return res, nil
}

// importWriter writes the upserts of an import as they are planned, type
// by type (parents first): a type's updates importChunk rows a statement
// as they come, its inserts once the type ends (after its updates, as a
// rename must free its name before an insert takes it), kept meanwhile as
// store.Rows (their JSON, no map).
type importWriter struct {
	a       *App
	tx      Tx
	prog    *Progress
	last    time.Time
	typ     *entity.Type
	inserts []store.Row
	updates []store.Row
}

// add plans a write of e (canonical JSON body) of type t.
func (w *importWriter) add(ctx context.Context, t *entity.Type, e map[string]any, body []byte, update bool) error {
	if t != w.typ {
		if err := w.endType(ctx); err != nil {
			return err
		}
		w.typ = t
	}
	r, err := store.PrepareRow(t, e, body)
	if err != nil {
		return declarativeStoreError(t.Name, err)
	}
	w.planned(1)
	if !update {
		w.inserts = append(w.inserts, r)
		return nil
	}
	w.updates = append(w.updates, r)
	if len(w.updates) >= importChunk {
		return w.flushUpdates(ctx)
	}
	return nil
}

func (w *importWriter) flushUpdates(ctx context.Context) error {
	if len(w.updates) == 0 {
		return nil
	}
	if err := w.tx.UpdateRows(ctx, w.typ, w.updates); err != nil {
		return declarativeStoreError(w.typ.Name, err)
	}
	w.done(len(w.updates))
	w.updates = w.updates[:0]
	return nil
}

// endType writes what is left of the current type: its updates, then its
// inserts.
func (w *importWriter) endType(ctx context.Context) error {
	if w.typ == nil {
		return nil
	}
	if err := w.flushUpdates(ctx); err != nil {
		return err
	}
	for i := 0; i < len(w.inserts); i += importChunk {
		part := w.inserts[i:min(i+importChunk, len(w.inserts))]
		if err := w.tx.InsertRows(ctx, w.typ, part); err != nil {
			return declarativeStoreError(w.typ.Name, err)
		}
		w.done(len(part))
		clear(part) // the outbox keeps the JSON; the rows' values can go
	}
	w.inserts = w.inserts[:0]
	return nil
}

// planned counts n more rows to write.
func (w *importWriter) planned(n int) {
	w.a.imports.update(w.prog, func(p *Progress) { p.Phase, p.Rows = "writing", p.Rows+n })
}

// done counts n rows written, logging progress at most every second.
func (w *importWriter) done(n int) {
	w.a.imports.update(w.prog, func(p *Progress) { p.RowsWritten += n })
	if now := w.a.now(); now.Sub(w.last) >= time.Second {
		w.last = now
		p := w.a.imports.snapshot(w.prog)
		w.a.imports.logger().Info("declarative import writing", "import", w.prog.ID, "rows_written", p.RowsWritten, "rows", p.Rows)
	}
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
