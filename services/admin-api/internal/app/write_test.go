package app

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
)

// fakeTx holds entities by type and id or endpoint key; only the reads
// that resolving references and parents use are implemented.
type fakeTx struct {
	Tx
	ents map[string]map[string]map[string]any // type -> id or name -> entity
}

func (f fakeTx) Get(_ context.Context, t *entity.Type, idOrName string, _ bool) (map[string]any, error) {
	if e, ok := f.ents[t.Name][idOrName]; ok {
		return e, nil
	}
	return nil, store.ErrNotFound
}

func TestScopeInput(t *testing.T) {
	const sid, cid = "11111111-2222-4333-8444-555555555555", "21111111-2222-4333-8444-555555555555"
	svc := map[string]any{"id": sid, "name": "s"}
	tx := fakeTx{ents: map[string]map[string]map[string]any{
		"services":  {sid: svc, "s": svc},
		"consumers": {"c": {"id": cid, "username": "c"}},
	}}
	for _, tc := range []struct {
		name    string
		t       *entity.Type
		sc      Scope
		in      map[string]any
		want    map[string]any // in after the call
		wantErr func(error) bool
	}{
		{"top level, references by id untouched", entity.Route, Scope{},
			map[string]any{"service": map[string]any{"id": sid}},
			map[string]any{"service": map[string]any{"id": sid}}, nil},
		{"reference by endpoint key becomes an id", entity.Route, Scope{},
			map[string]any{"service": map[string]any{"name": "s"}},
			map[string]any{"service": map[string]any{"id": sid}}, nil},
		{"nested: the parent from the URL, by name", entity.Route, Scope{Parent: entity.Service, Field: "service", Key: "s"},
			map[string]any{"name": "r"},
			map[string]any{"name": "r", "service": map[string]any{"id": sid}}, nil},
		{"nested: the URL's parent wins over the body", entity.Plugin, Scope{Parent: entity.Service, Field: "service", Key: sid},
			map[string]any{"service": map[string]any{"name": "other"}, "consumer": map[string]any{"username": "c"}},
			map[string]any{"service": map[string]any{"id": sid}, "consumer": map[string]any{"id": cid}}, nil},
		{"a missing reference is a foreign key error", entity.Route, Scope{},
			map[string]any{"service": map[string]any{"name": "nope"}}, nil,
			func(err error) bool {
				var fe *store.ForeignKeyError
				return errors.As(err, &fe) && fe.Field == "service" && fe.Key == "name" && fe.Value == "nope"
			}},
		{"a missing parent is not found", entity.Route, Scope{Parent: entity.Service, Field: "service", Key: "nope"},
			map[string]any{}, nil, func(err error) bool { return errors.Is(err, store.ErrNotFound) }},
		{"a malformed reference is left to validation", entity.Route, Scope{},
			map[string]any{"service": "s"}, map[string]any{"service": "s"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := scopeInput(t.Context(), tx, tc.t, tc.sc, tc.in)
			if tc.wantErr != nil {
				if !tc.wantErr(err) {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(tc.in, tc.want) {
				t.Errorf("input = %v, want %v", tc.in, tc.want)
			}
		})
	}
}
