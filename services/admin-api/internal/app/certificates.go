package app

import (
	"context"
	"encoding/json"
	"errors"
	"sort"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
	"github.com/google/uuid"
)

// A certificate's "snis", as Kong's certificates DAO has it: a list of
// names that is no field of the stored certificate but its SNI entities.
// A write with "snis" creates the missing SNIs and deletes the others of
// the certificate, in the write's transaction (each SNI its own change on
// cp.changes); a write without keeps them; every certificate read and
// write answers with the names, sorted; deleting a certificate deletes its
// SNIs first.

// takeSNIs removes "snis" from a certificate's input and checks it: nil
// when t is not certificates or the input has none; an empty list for
// null. A repeated name, or a list that is not of strings, is a schema
// violation on "snis".
func takeSNIs(t *entity.Type, in map[string]any) (*[]string, error) {
	if t != entity.Certificate {
		return nil, nil
	}
	v, ok := in["snis"]
	if !ok {
		return nil, nil
	}
	delete(in, "snis")
	names := []string{}
	switch x := v.(type) {
	case nil:
	case []any:
		seen := map[string]bool{}
		for _, el := range x {
			s, ok := el.(string)
			if !ok {
				return nil, entity.Errors{"snis": "expected an array of strings"}
			}
			if seen[s] {
				return nil, entity.Errors{"snis": s + " is duplicated"}
			}
			seen[s] = true
			names = append(names, s)
		}
	default:
		return nil, entity.Errors{"snis": "expected an array"}
	}
	sort.Strings(names)
	return &names, nil
}

// certSNIs lists the SNIs of the certificate id within a write.
func certSNIs(ctx context.Context, tx Tx, id string) ([]map[string]any, error) {
	all, err := tx.All(ctx, entity.SNI)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, s := range all {
		if ref, _ := s["certificate"].(map[string]any); ref["id"] == id {
			out = append(out, s)
		}
	}
	return out, nil
}

// syncSNIs makes the SNIs of the certificate id the list names (when not
// nil) and returns the certificate's body with "snis" added. body is
// returned as is for other types.
func syncSNIs(ctx context.Context, tx Tx, t *entity.Type, id string, body []byte, names *[]string, now int64) ([]byte, error) {
	if t != entity.Certificate {
		return body, nil
	}
	cur, err := certSNIs(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	have := map[string]string{} // name -> id
	for _, s := range cur {
		n, _ := s["name"].(string)
		sid, _ := s["id"].(string)
		have[n] = sid
	}
	var list []string
	if names == nil {
		for n := range have {
			list = append(list, n)
		}
		sort.Strings(list)
	} else {
		list = *names
		want := map[string]bool{}
		for _, n := range list {
			want[n] = true
			if _, ok := have[n]; ok {
				continue
			}
			other, err := tx.Get(ctx, entity.SNI, n, false)
			if err == nil {
				ref, _ := other["certificate"].(map[string]any)
				oid, _ := ref["id"].(string)
				return nil, entity.Errors{"snis": n + " already associated with existing certificate '" + oid + "'"}
			}
			if !errors.Is(err, store.ErrNotFound) {
				return nil, err
			}
		}
		var gone []string
		for n, sid := range have {
			if !want[n] {
				gone = append(gone, sid)
			}
		}
		sort.Strings(gone)
		for _, sid := range gone {
			if _, err := tx.Delete(ctx, entity.SNI, sid); err != nil {
				return nil, err
			}
		}
		for _, n := range list {
			if _, ok := have[n]; ok {
				continue
			}
			e, errs := entity.Normalize(entity.SNI, map[string]any{"name": n, "certificate": map[string]any{"id": id}}, nil,
				map[string]any{"id": uuid.NewString(), "created_at": now, "updated_at": now})
			if errs != nil {
				msg := any(errs)
				if m, ok := errs["name"]; ok {
					msg = m
				}
				return nil, entity.Errors{"snis": msg}
			}
			if _, err := tx.Insert(ctx, entity.SNI, e); err != nil {
				return nil, err
			}
		}
	}
	return withNames(body, list)
}

// withNames adds "snis" to a certificate's canonical JSON.
func withNames(body []byte, names []string) ([]byte, error) {
	e, err := entity.Decode(body)
	if err != nil {
		return nil, err
	}
	list := make([]any, len(names))
	for i, n := range names {
		list[i] = n
	}
	e["snis"] = list
	return entity.Canonical(e)
}

// deleteSNIs deletes the SNIs of a certificate about to be deleted.
func deleteSNIs(ctx context.Context, tx Tx, t *entity.Type, id string) error {
	if t != entity.Certificate {
		return nil
	}
	cur, err := certSNIs(ctx, tx, id)
	if err != nil {
		return err
	}
	for _, s := range cur {
		sid, err := entity.ID(s)
		if err != nil {
			return err
		}
		if _, err := tx.Delete(ctx, entity.SNI, sid); err != nil {
			return err
		}
	}
	return nil
}

// readSNIs is the sorted names of the SNIs of the certificate id, outside
// a write.
func (a *App) readSNIs(ctx context.Context, id string) ([]string, error) {
	var names []string
	offset := ""
	for {
		page, next, err := a.store.List(ctx, entity.SNI, store.Filter{Field: "certificate", ID: id}, 1000, offset)
		if err != nil {
			return nil, err
		}
		for _, raw := range page {
			var s struct{ Name string }
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, err
			}
			names = append(names, s.Name)
		}
		if next == "" {
			break
		}
		offset = next
	}
	sort.Strings(names)
	return names, nil
}

// withSNIs adds "snis" to a certificate read outside a write; other types
// are returned as they are.
func (a *App) withSNIs(ctx context.Context, t *entity.Type, e map[string]any) (map[string]any, error) {
	if t != entity.Certificate || e == nil {
		return e, nil
	}
	id, err := entity.ID(e)
	if err != nil {
		return nil, err
	}
	names, err := a.readSNIs(ctx, id)
	if err != nil {
		return nil, err
	}
	list := make([]any, len(names))
	for i, n := range names {
		list[i] = n
	}
	e["snis"] = list
	return e, nil
}

// listWithSNIs adds "snis" to each certificate of a list page.
func (a *App) listWithSNIs(ctx context.Context, t *entity.Type, page []json.RawMessage) ([]json.RawMessage, error) {
	if t != entity.Certificate {
		return page, nil
	}
	for i, raw := range page {
		e, err := entity.Decode(raw)
		if err != nil {
			return nil, err
		}
		if e, err = a.withSNIs(ctx, t, e); err != nil {
			return nil, err
		}
		if page[i], err = entity.Canonical(e); err != nil {
			return nil, err
		}
	}
	return page, nil
}

// certBySNI is Kong's /certificates/{id or SNI name}: a key that is not a
// UUID names an SNI, and addresses its certificate. get reads an entity
// (in or outside a write); store.ErrNotFound when no SNI has the name.
func certBySNI(ctx context.Context, get func(context.Context, *entity.Type, string) (map[string]any, error), t *entity.Type, idOrName string) (string, error) {
	if t != entity.Certificate || store.IsUUID(idOrName) {
		return idOrName, nil
	}
	sni, err := get(ctx, entity.SNI, idOrName)
	if err != nil {
		return "", err
	}
	ref, _ := sni["certificate"].(map[string]any)
	id, _ := ref["id"].(string)
	if id == "" {
		return "", store.ErrNotFound
	}
	return id, nil
}

func (a *App) storeGetter() func(context.Context, *entity.Type, string) (map[string]any, error) {
	return func(ctx context.Context, t *entity.Type, key string) (map[string]any, error) {
		return a.store.Get(ctx, t, key, store.Filter{})
	}
}

func txGetter(tx Tx) func(context.Context, *entity.Type, string) (map[string]any, error) {
	return func(ctx context.Context, t *entity.Type, key string) (map[string]any, error) {
		return tx.Get(ctx, t, key, false)
	}
}

// putCertBySNI is a PUT of /certificates/{SNI name}: the certificate of
// that SNI, or a new one with that SNI (Kong adds the name to the
// certificate's snis).
func putCertBySNI(ctx context.Context, tx Tx, t *entity.Type, idOrName string, snis *[]string) (string, *[]string, error) {
	if t != entity.Certificate || store.IsUUID(idOrName) {
		return idOrName, snis, nil
	}
	id, err := certBySNI(ctx, txGetter(tx), t, idOrName)
	if err == nil {
		return id, snis, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", nil, err
	}
	list := []string{idOrName}
	if snis != nil {
		for _, n := range *snis {
			if n != idOrName {
				list = append(list, n)
			}
		}
	}
	sort.Strings(list)
	return uuid.NewString(), &list, nil
}
