package app

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/google/uuid"
)

// Tags returns a page of (tag, entity) pairs of every entity type, only
// those of tag when it is not "" (Kong's GET /tags and /tags/{tag}).
func (a *App) Tags(ctx context.Context, tag string, p Page) ([]store.Tag, string, error) {
	if strings.IndexByte(tag, 0) >= 0 {
		return nil, "", entity.Errors{"tag": entity.MsgNUL}
	}
	return a.store.Tags(ctx, tag, p.Size, p.Offset)
}

// ConsumersByCustomID lists the consumer with custom_id (Kong's GET
// /consumers?custom_id=): one entity or none.
func (a *App) ConsumersByCustomID(ctx context.Context, customID string) ([]map[string]any, error) {
	if strings.IndexByte(customID, 0) >= 0 {
		return nil, entity.Errors{"custom_id": entity.MsgNUL}
	}
	e, err := a.store.GetBy(ctx, entity.Consumer, "custom_id", customID)
	if errors.Is(err, store.ErrNotFound) {
		return []map[string]any{}, nil
	}
	if err != nil {
		return nil, err
	}
	return []map[string]any{e}, nil
}

// Validate checks in as a new entity of t without writing it (Kong's
// POST /schemas/{entity}/validate): the schema only, references are not
// looked up.
func (a *App) Validate(t *entity.Type, in map[string]any) error {
	now := a.now().Unix()
	keep := map[string]any{"created_at": now, "updated_at": now}
	if _, ok := in["id"]; !ok {
		keep["id"] = uuid.NewString()
	}
	if _, errs := entity.Normalize(t, in, nil, keep); errs != nil {
		return errs
	}
	return nil
}

// A single-parent sub-resource (Kong's /routes/{route}/service) addresses
// the entity that the foreign field Field of the entity Key of type Child
// references.
type Referenced struct {
	Child *entity.Type
	Field string
	Key   string
}

// Type is the referenced type.
func (r Referenced) Type() *entity.Type {
	f, _ := r.Child.Field(r.Field)
	t, _ := entity.Lookup(f.Ref.To)
	return t
}

// ErrMethodNotAllowed is Kong's answer to DELETE on a single-parent
// sub-resource that is set: the parent is deleted through its own URL.
var ErrMethodNotAllowed = errors.New("method not allowed")

// refID is the id the child's field references ("" for null).
func refID(child map[string]any, field string) string {
	ref, _ := child[field].(map[string]any)
	id, _ := ref["id"].(string)
	return id
}

// referencedID resolves r outside a write: store.ErrNotFound when the
// child does not exist or its field is null.
func (a *App) referencedID(ctx context.Context, r Referenced) (string, error) {
	child, err := a.store.Get(ctx, r.Child, r.Key, store.Filter{})
	if err != nil {
		return "", err
	}
	id := refID(child, r.Field)
	if id == "" {
		return "", store.ErrNotFound
	}
	return id, nil
}

// GetReferenced returns the entity r references.
func (a *App) GetReferenced(ctx context.Context, r Referenced) (map[string]any, error) {
	id, err := a.referencedID(ctx, r)
	if err != nil {
		return nil, err
	}
	return a.Get(ctx, r.Type(), Scope{}, id)
}

// PatchReferenced merges in into the entity r references.
func (a *App) PatchReferenced(ctx context.Context, k Key, r Referenced, in map[string]any) (Reply, error) {
	id, err := a.referencedID(ctx, r)
	if err != nil {
		return Reply{}, err
	}
	return a.Patch(ctx, k, r.Type(), Scope{}, id, in)
}

// DeleteReferenced is Kong's DELETE on a single-parent sub-resource: not
// found when the child does not exist or references nothing, else
// ErrMethodNotAllowed.
func (a *App) DeleteReferenced(ctx context.Context, r Referenced) error {
	if _, err := a.referencedID(ctx, r); err != nil {
		return err
	}
	return ErrMethodNotAllowed
}

// PutReferenced replaces the entity r references with in; when the child
// references nothing it creates the entity (a new id) and makes the child
// reference it, in one transaction. 200 with the entity.
func (a *App) PutReferenced(ctx context.Context, k Key, r Referenced, in map[string]any) (Reply, error) {
	child, err := a.store.Get(ctx, r.Child, r.Key, store.Filter{})
	if err != nil {
		return Reply{}, err
	}
	if id := refID(child, r.Field); id != "" {
		return a.Put(ctx, k, r.Type(), Scope{}, id, in)
	}
	rt := r.Type()
	return a.write(ctx, k, func(ctx context.Context, tx Tx) (Reply, error) {
		child, err := tx.Get(ctx, r.Child, r.Key, true)
		if err != nil {
			return Reply{}, err
		}
		if refID(child, r.Field) != "" {
			return Reply{}, entity.Errors{r.Field: "set by a concurrent write; retry"}
		}
		snis, err := takeSNIs(rt, in)
		if err != nil {
			return Reply{}, err
		}
		if err := resolveRefs(ctx, tx, rt, in); err != nil {
			return Reply{}, err
		}
		now := a.now().Unix()
		e, errs := entity.Normalize(rt, in, nil, map[string]any{"id": uuid.NewString(), "created_at": now, "updated_at": now})
		if errs != nil {
			return Reply{}, errs
		}
		b, err := tx.Insert(ctx, rt, e)
		if err != nil {
			return Reply{}, err
		}
		if b, err = syncSNIs(ctx, tx, rt, e["id"].(string), b, snis, now); err != nil {
			return Reply{}, err
		}
		child[r.Field] = map[string]any{"id": e["id"]}
		child["updated_at"] = now
		if _, err := tx.Update(ctx, r.Child, child); err != nil {
			return Reply{}, err
		}
		return Reply{Status: http.StatusOK, Body: b}, nil
	})
}
