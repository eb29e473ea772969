package app

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

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
	return a.write(ctx, k, func(ctx context.Context, tx Tx) (Reply, error) {
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
		if err := apply(ctx, tx, plan); err != nil {
			return Reply{}, err
		}
		var res ConfigResult
		res.Inserted, res.Updated, res.Deleted = plan.Counts()
		res.Unchanged, res.Changes = plan.Unchanged, res.Inserted+res.Updated+res.Deleted
		body, err := json.Marshal(res)
		return Reply{Status: http.StatusCreated, Body: body}, err
	})
}

// apply writes the changes: parents' upserts first, then children's
// deletes first.
func apply(ctx context.Context, tx Tx, c declarative.Changes) error {
	for _, u := range c.Upserts {
		if err := tx.UpdateMany(ctx, u.Type, u.Update); err != nil {
			return declarativeStoreError(u.Type.Name, err)
		}
		if err := tx.InsertMany(ctx, u.Type, u.Insert, u.Bodies); err != nil {
			return declarativeStoreError(u.Type.Name, err)
		}
	}
	for _, d := range c.Deletes {
		if err := tx.DeleteMany(ctx, d.Type, d.IDs); err != nil {
			return err
		}
	}
	return nil
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
