package app

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
)

// A key-auth credential's ttl, as Kong has it: written with ttl, the
// credential expires ttl seconds after the write. The stored entity keeps
// the ttl given and the write's updated_at (the data planes refuse the
// credential from updated_at + ttl on); reads show the seconds left, and
// an expired credential is not found (nor listed, nor patched). A PATCH
// without ttl keeps the expiry (its ttl becomes the seconds left); PUT
// replaces it like every other field.

func intOf(v any) (int64, bool) {
	switch x := v.(type) {
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	case int64:
		return x, true
	case float64:
		return int64(x), true
	}
	return 0, false
}

// ttlLeft is the seconds left of a credential with a ttl; ok is false for
// other entities and credentials without one.
func ttlLeft(t *entity.Type, e map[string]any, now int64) (left int64, ok bool) {
	if t != entity.KeyAuth || e == nil {
		return 0, false
	}
	ttl, ok1 := intOf(e["ttl"])
	at, ok2 := intOf(e["updated_at"])
	if !ok1 || !ok2 || ttl <= 0 {
		return 0, false
	}
	return at + ttl - now, true
}

// liveView is e as a read shows it: its ttl the seconds left; false when
// it has expired.
func liveView(t *entity.Type, e map[string]any, now int64) (map[string]any, bool) {
	left, ok := ttlLeft(t, e, now)
	if !ok {
		return e, true
	}
	if left <= 0 {
		return nil, false
	}
	e["ttl"] = left
	return e, true
}

// liveList drops the expired credentials of a list page and shows the
// others' seconds left.
func liveList(t *entity.Type, page []json.RawMessage, now int64) ([]json.RawMessage, error) {
	if t != entity.KeyAuth {
		return page, nil
	}
	out := page[:0]
	for _, raw := range page {
		e, err := entity.Decode(raw)
		if err != nil {
			return nil, err
		}
		if _, ok := ttlLeft(t, e, now); !ok {
			out = append(out, raw)
			continue
		}
		e, live := liveView(t, e, now)
		if !live {
			continue
		}
		b, err := entity.Canonical(e)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// keepExpiry gives a PATCH without ttl of a credential with one the
// seconds left, so that its expiry stays; false when it has expired.
func keepExpiry(t *entity.Type, old, in map[string]any, now int64) bool {
	left, ok := ttlLeft(t, old, now)
	if !ok {
		return true
	}
	if left <= 0 {
		return false
	}
	if _, given := in["ttl"]; !given {
		in["ttl"] = left
	}
	return true
}

// dropExpired deletes, before a credential e is created, an expired one
// holding its key: Kong would have removed it already (its ttl cleanup),
// so the key is free again.
func dropExpired(ctx context.Context, tx Tx, t *entity.Type, e map[string]any, now int64) error {
	key, _ := e["key"].(string)
	if t != entity.KeyAuth || key == "" {
		return nil
	}
	old, err := tx.Get(ctx, t, key, true)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if left, ok := ttlLeft(t, old, now); !ok || left > 0 {
		return nil // the insert answers 409
	}
	id, err := entity.ID(old)
	if err != nil {
		return err
	}
	_, err = tx.Delete(ctx, t, id)
	return err
}
