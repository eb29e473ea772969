package app

import (
	"context"
	"errors"
	"net/http"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/google/uuid"
)

// Reply is the answer to a write: an HTTP status and a JSON body (nil:
// none). A keyed write stores it with the write, so that a retry gets the
// same answer; Replayed marks such an answer.
type Reply struct {
	Status   int
	Body     []byte
	Replayed bool
	// Tx is the transaction the write committed (0: it changed nothing,
	// or it is a replay).
	Tx uint64
}

// Key is a write's Idempotency-Key and the fingerprint of its request
// (store.HashRequest); the zero Key is an unkeyed write.
type Key struct {
	Key         string
	RequestHash string
}

// ErrKeyReused is an Idempotency-Key that a different request used.
var ErrKeyReused = errors.New("Idempotency-Key was already used for a different request")

// errReplay aborts a keyed write whose key a committed write already used.
var errReplay = errors.New("idempotent replay")

// write runs fn in one transaction, honouring k: a write whose key a
// committed write used gets that write's reply and writes nothing.
func (a *App) write(ctx context.Context, k Key, fn func(ctx context.Context, tx Tx) (Reply, error)) (Reply, error) {
	replay := func(rec *store.Idempotency) (Reply, error) {
		if rec.RequestHash != k.RequestHash {
			return Reply{}, ErrKeyReused
		}
		return Reply{Status: rec.Status, Body: rec.Response, Replayed: true}, nil
	}
	if k.Key != "" {
		rec, err := a.store.FindIdempotency(ctx, k.Key)
		if err != nil {
			return Reply{}, err
		}
		if rec != nil {
			return replay(rec)
		}
	}
	var r Reply
	var prior *store.Idempotency
	res, err := a.store.Write(ctx, func(tx *store.Tx) error {
		if k.Key != "" {
			// Concurrent requests with this key wait here for the first.
			rec, err := tx.ClaimIdempotency(ctx, k.Key)
			if err != nil {
				return err
			}
			if rec != nil {
				prior = rec
				return errReplay
			}
		}
		var err error
		if r, err = fn(ctx, tx); err != nil {
			return err
		}
		if k.Key != "" {
			tx.Idempotent(store.Idempotency{Key: k.Key, RequestHash: k.RequestHash, Status: r.Status, Response: append([]byte{}, r.Body...)})
		}
		return nil
	})
	if errors.Is(err, errReplay) {
		return replay(prior)
	}
	if err != nil {
		return Reply{}, err
	}
	r.Tx = res.Tx
	return r, nil
}

// txParentID resolves the parent of a nested URL within a write.
func txParentID(ctx context.Context, tx Tx, sc Scope) (string, error) {
	if !sc.nested() {
		return "", nil
	}
	p, err := tx.Get(ctx, sc.Parent, sc.Key, false)
	if err != nil {
		return "", err
	}
	return entity.ID(p)
}

// resolveRefs turns foreign references given by endpoint key
// ({"name": "svc"}) into ids; a missing target is a ForeignKeyError.
func resolveRefs(ctx context.Context, tx Tx, t *entity.Type, in map[string]any) error {
	for _, f := range t.Foreigns() {
		ref, ok := in[f.Name].(map[string]any)
		if !ok || ref["id"] != nil {
			continue
		}
		rt, ok := entity.Lookup(f.Ref.To)
		if !ok || rt.Endpoint == "" {
			continue
		}
		name, ok := ref[rt.Endpoint].(string)
		if !ok {
			continue
		}
		e, err := tx.Get(ctx, rt, name, false)
		if errors.Is(err, store.ErrNotFound) {
			return &store.ForeignKeyError{Field: f.Name, Key: rt.Endpoint, Value: name, Ref: rt.Name}
		}
		if err != nil {
			return err
		}
		id, err := entity.ID(e)
		if err != nil {
			return err
		}
		in[f.Name] = map[string]any{"id": id}
	}
	return nil
}

// scopeInput sets the parent reference of a nested write and resolves
// the input's references; it returns the parent's id.
func scopeInput(ctx context.Context, tx Tx, t *entity.Type, sc Scope, in map[string]any) (string, error) {
	pid, err := txParentID(ctx, tx, sc)
	if err != nil {
		return "", err
	}
	if pid != "" {
		in[sc.Field] = map[string]any{"id": pid}
	}
	return pid, resolveRefs(ctx, tx, t, in)
}

// Create adds an entity of t from in (POST): a new id unless in holds
// one, created_at = updated_at = now. 201 with the entity.
func (a *App) Create(ctx context.Context, k Key, t *entity.Type, sc Scope, in map[string]any) (Reply, error) {
	return a.write(ctx, k, func(ctx context.Context, tx Tx) (Reply, error) {
		if _, err := scopeInput(ctx, tx, t, sc, in); err != nil {
			return Reply{}, err
		}
		snis, err := takeSNIs(t, in)
		if err != nil {
			return Reply{}, err
		}
		now := a.now().Unix()
		e, errs := entity.Normalize(t, in, nil, map[string]any{"created_at": now, "updated_at": now})
		if errs != nil {
			return Reply{}, errs
		}
		if e["id"] == nil {
			e["id"] = uuid.NewString()
		}
		if err := dropExpired(ctx, tx, t, e, now); err != nil {
			return Reply{}, err
		}
		b, err := tx.Insert(ctx, t, e)
		if err == nil {
			b, err = syncSNIs(ctx, tx, t, e["id"].(string), b, snis, now)
		}
		return Reply{Status: http.StatusCreated, Body: b}, err
	})
}

// Put upserts the entity of t addressed by idOrName within sc (PUT): the
// input replaces it whole (keeping its id and created_at), or creates it
// with that id, or with that endpoint key and a new id. 200 with the
// entity.
func (a *App) Put(ctx context.Context, k Key, t *entity.Type, sc Scope, idOrName string, in map[string]any) (Reply, error) {
	return a.write(ctx, k, func(ctx context.Context, tx Tx) (Reply, error) {
		pid, err := scopeInput(ctx, tx, t, sc, in)
		if err != nil {
			return Reply{}, err
		}
		snis, err := takeSNIs(t, in)
		if err != nil {
			return Reply{}, err
		}
		if idOrName, snis, err = putCertBySNI(ctx, tx, t, idOrName, snis); err != nil {
			return Reply{}, err
		}
		old, err := tx.GetScoped(ctx, t, idOrName, true, sc.filter(pid))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return Reply{}, err
		}
		now := a.now().Unix()
		keep := map[string]any{"created_at": now, "updated_at": now}
		switch {
		case old != nil:
			keep["id"], keep["created_at"] = old["id"], old["created_at"]
		case store.IsUUID(idOrName):
			keep["id"] = idOrName
		default:
			keep["id"] = uuid.NewString()
		}
		if !store.IsUUID(idOrName) {
			if t.Endpoint == "" {
				return Reply{}, store.ErrNotFound
			}
			in[t.Endpoint] = idOrName
		}
		e, errs := entity.Normalize(t, in, nil, keep)
		if errs != nil {
			return Reply{}, errs
		}
		var b []byte
		if old != nil {
			b, err = tx.Update(ctx, t, e)
		} else {
			b, err = tx.Insert(ctx, t, e)
		}
		if err == nil {
			b, err = syncSNIs(ctx, tx, t, keep["id"].(string), b, snis, now)
		}
		return Reply{Status: http.StatusOK, Body: b}, err
	})
}

// Patch merges in into the entity of t addressed by idOrName within sc
// (PATCH; records merge, updated_at = now). 200 with the entity; not found
// when it does not exist.
func (a *App) Patch(ctx context.Context, k Key, t *entity.Type, sc Scope, idOrName string, in map[string]any) (Reply, error) {
	return a.write(ctx, k, func(ctx context.Context, tx Tx) (Reply, error) {
		pid, err := txParentID(ctx, tx, sc)
		if err != nil {
			return Reply{}, err
		}
		if idOrName, err = certBySNI(ctx, txGetter(tx), t, idOrName); err != nil {
			return Reply{}, err
		}
		old, err := tx.GetScoped(ctx, t, idOrName, true, sc.filter(pid))
		if err != nil {
			return Reply{}, err
		}
		if err := resolveRefs(ctx, tx, t, in); err != nil {
			return Reply{}, err
		}
		snis, err := takeSNIs(t, in)
		if err != nil {
			return Reply{}, err
		}
		now := a.now().Unix()
		if !keepExpiry(t, old, in, now) {
			return Reply{}, store.ErrNotFound
		}
		e, errs := entity.Normalize(t, in, old, map[string]any{"updated_at": now})
		if errs != nil {
			return Reply{}, errs
		}
		b, err := tx.Update(ctx, t, e)
		if err == nil {
			b, err = syncSNIs(ctx, tx, t, e["id"].(string), b, snis, now)
		}
		return Reply{Status: http.StatusOK, Body: b}, err
	})
}

// Delete removes the entity of t addressed by idOrName within sc, with
// its cascading children. 204, also when it does not exist (as Kong).
func (a *App) Delete(ctx context.Context, k Key, t *entity.Type, sc Scope, idOrName string) (Reply, error) {
	return a.write(ctx, k, func(ctx context.Context, tx Tx) (Reply, error) {
		pid, err := txParentID(ctx, tx, sc)
		if err != nil {
			return Reply{}, err
		}
		idOrName, err = certBySNI(ctx, txGetter(tx), t, idOrName)
		if errors.Is(err, store.ErrNotFound) {
			return Reply{Status: http.StatusNoContent}, nil
		}
		if err != nil {
			return Reply{}, err
		}
		old, err := tx.GetScoped(ctx, t, idOrName, true, sc.filter(pid))
		if errors.Is(err, store.ErrNotFound) {
			return Reply{Status: http.StatusNoContent}, nil
		}
		if err != nil {
			return Reply{}, err
		}
		id, err := entity.ID(old)
		if err != nil {
			return Reply{}, err
		}
		if err := deleteSNIs(ctx, tx, t, id); err != nil {
			return Reply{}, err
		}
		_, err = tx.Delete(ctx, t, id)
		return Reply{Status: http.StatusNoContent}, err
	})
}
