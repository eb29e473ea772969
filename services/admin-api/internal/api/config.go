package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/declarative"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/labstack/echo/v4"
)

// declarativeError is a code 14 error.
func declarativeError(err *declarative.Error) *Error {
	return &Error{Status: http.StatusBadRequest, Message: err.Error(), Code: codeDeclarative, Fields: err.Fields}
}

// postConfig replaces the whole configuration with a declarative one in
// one transaction, writing (and publishing) only the differences.
func (a *API) postConfig(c echo.Context) error {
	return a.writeRaw(c, a.cfg.MaxConfigBytes, func(ctx context.Context, tx *store.Tx, raw []byte) (int, []byte, error) {
		doc, err := declarative.Parse(raw)
		var de *declarative.Error
		if errors.As(err, &de) {
			return 0, nil, declarativeError(de)
		}
		items, err := declarative.Flatten(doc)
		if errors.As(err, &de) {
			return 0, nil, declarativeError(de)
		}
		if err := tx.LockConfig(ctx); err != nil {
			return 0, nil, err
		}
		cur := declarative.Current{}
		stored := map[string]map[string][]byte{}
		for _, t := range entity.Types {
			list, err := tx.All(ctx, t)
			if err != nil {
				return 0, nil, err
			}
			cur[t.Name] = map[string]map[string]any{}
			stored[t.Name] = map[string][]byte{}
			for _, e := range list {
				id := e["id"].(string)
				cur[t.Name][id] = e
				b, err := store.Canonical(e)
				if err != nil {
					return 0, nil, err
				}
				stored[t.Name][id] = b
			}
		}
		now := a.now().Unix()
		err = declarative.Resolve(items, cur, now)
		if errors.As(err, &de) {
			return 0, nil, declarativeError(de)
		}
		var inserted, updated, deleted, unchanged int
		keep := map[string]map[string]bool{}
		// Parents first: updates and inserts, type by type.
		var ins, upd []map[string]any
		var insBodies [][]byte
		var curT *entity.Type
		flush := func() error {
			if curT == nil {
				return nil
			}
			if err := tx.UpdateMany(ctx, curT, upd); err != nil {
				return declarativeStoreError(curT.Name, err)
			}
			if err := tx.InsertMany(ctx, curT, ins, insBodies); err != nil {
				return declarativeStoreError(curT.Name, err)
			}
			updated += len(upd)
			inserted += len(ins)
			ins, upd, insBodies = nil, nil, nil
			return nil
		}
		for _, it := range items {
			t := it.Type
			if t != curT {
				if err := flush(); err != nil {
					return 0, nil, err
				}
				curT = t
			}
			if keep[t.Name] == nil {
				keep[t.Name] = map[string]bool{}
			}
			keep[t.Name][it.ID] = true
			old, exists := stored[t.Name][it.ID]
			b, err := store.Canonical(it.Entity)
			if err != nil {
				return 0, nil, err
			}
			switch {
			case exists && bytes.Equal(old, b):
				unchanged++
			case exists:
				it.Entity["updated_at"] = now
				upd = append(upd, it.Entity)
			default:
				ins = append(ins, it.Entity)
				insBodies = append(insBodies, b)
			}
		}
		if err := flush(); err != nil {
			return 0, nil, err
		}
		// Children first: deletes of everything not declared.
		for i := len(entity.Types) - 1; i >= 0; i-- {
			t := entity.Types[i]
			var gone []string
			for _, e := range mapKeys(cur[t.Name]) {
				if !keep[t.Name][e] {
					gone = append(gone, e)
				}
			}
			if err := tx.DeleteMany(ctx, t, gone); err != nil {
				return 0, nil, err
			}
			deleted += len(gone)
		}
		body, _ := jsonMarshal(map[string]any{
			"inserted": inserted, "updated": updated, "deleted": deleted, "unchanged": unchanged,
			"changes": inserted + updated + deleted,
		})
		return http.StatusCreated, body, nil
	})
}

// declarativeStoreError reports a constraint violation against the
// declared entity that caused it.
func declarativeStoreError(path string, err error) error {
	var ue *store.UniqueError
	var fe *store.ForeignKeyError
	var se entity.Errors
	switch {
	case errors.As(err, &ue):
		return declarativeError(&declarative.Error{Fields: map[string]any{path: ue.Error()}})
	case errors.As(err, &fe):
		return declarativeError(&declarative.Error{Fields: map[string]any{path: fe.Error()}})
	case errors.As(err, &se):
		return declarativeError(&declarative.Error{Fields: map[string]any{path: se}})
	}
	return err
}

// getConfig exports the configuration as Kong does: {"config": "<yaml>"}.
func (a *API) getConfig(c echo.Context) error {
	ctx := c.Request().Context()
	ents := map[string][]map[string]any{}
	for _, t := range entity.Types {
		list, err := a.store.All(ctx, t)
		if err != nil {
			return err
		}
		ents[t.Name] = list
	}
	y, err := declarative.Export(ents)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"config": string(y)})
}
