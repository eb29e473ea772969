// Package app is admin-api's application layer: what the Admin API's
// operations mean, independent of HTTP and of Postgres. It creates,
// upserts (PUT), merges (PATCH) and deletes entities (ids, timestamps,
// references given by endpoint key, the parent of a nested URL), replaces
// the whole configuration with a declarative one (declarative.Plan decides
// the changes), and replays keyed writes (Idempotency-Key). The store it
// needs is the Store interface below; the HTTP handlers (package api) parse
// a request, call App and render its answer.
package app

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/outbox"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/store"
)

// Store is what App needs of the entity store: reads, and writes that run
// a function in one transaction which commits with the outbox rows of its
// changes.
type Store interface {
	Write(ctx context.Context, fn func(tx *store.Tx) error) (store.Result, error)
	Get(ctx context.Context, t *entity.Type, idOrName string, f store.Filter) (map[string]any, error)
	List(ctx context.Context, t *entity.Type, f store.Filter, size int, offset string) ([]json.RawMessage, string, error)
	All(ctx context.Context, t *entity.Type) ([]map[string]any, error)
	Export(ctx context.Context, types []*entity.Type, fn func(t *entity.Type, e map[string]any) error) error
	FindIdempotency(ctx context.Context, key string) (*store.Idempotency, error)
	Ping(ctx context.Context) error
	Outbox(ctx context.Context) (outbox.Status, error)
	Tags(ctx context.Context, tag string, size int, offset string) ([]store.Tag, string, error)
	GetBy(ctx context.Context, t *entity.Type, column, value string) (map[string]any, error)
}

// Tx is what App needs of one write transaction.
type Tx interface {
	Get(ctx context.Context, t *entity.Type, idOrName string, lock bool) (map[string]any, error)
	GetScoped(ctx context.Context, t *entity.Type, idOrName string, lock bool, f store.Filter) (map[string]any, error)
	Insert(ctx context.Context, t *entity.Type, e map[string]any) ([]byte, error)
	Update(ctx context.Context, t *entity.Type, e map[string]any) ([]byte, error)
	Delete(ctx context.Context, t *entity.Type, id string) (bool, error)
	LockConfig(ctx context.Context) error
	All(ctx context.Context, t *entity.Type) ([]map[string]any, error)
	DeleteMany(ctx context.Context, t *entity.Type, ids []string) error
	Each(ctx context.Context, t *entity.Type, fn func(e map[string]any) error) error
	InsertRows(ctx context.Context, t *entity.Type, rows []store.Row) error
	UpdateRows(ctx context.Context, t *entity.Type, rows []store.Row) error
	ClaimIdempotency(ctx context.Context, key string) (*store.Idempotency, error)
	Idempotent(i store.Idempotency)
}

var (
	_ Store = (*store.Store)(nil)
	_ Tx    = (*store.Tx)(nil)
)

// App runs the Admin API's operations.
type App struct {
	store   Store
	now     func() time.Time
	imports imports // progress.go
}

// New returns an App over st.
func New(st Store) *App {
	return &App{store: st, now: time.Now}
}

// Scope is the parent of a nested URL (/services/{Key}/routes): the
// addressed entities' foreign field Field must reference the Parent entity
// with id or endpoint key Key. The zero Scope is a top-level URL.
type Scope struct {
	Parent *entity.Type
	Field  string
	Key    string
}

// nested reports whether the scope has a parent.
func (s Scope) nested() bool { return s.Parent != nil }

// filter is the store filter of the scope's parent id.
func (s Scope) filter(pid string) store.Filter {
	if !s.nested() {
		return store.Filter{}
	}
	return store.Filter{Field: s.Field, ID: pid}
}

// Ping checks that the store answers.
func (a *App) Ping(ctx context.Context) error { return a.store.Ping(ctx) }

// OutboxStatus is the relay's progress.
func (a *App) OutboxStatus(ctx context.Context) (outbox.Status, error) { return a.store.Outbox(ctx) }

// Get returns the entity of t addressed by id or endpoint key within sc.
func (a *App) Get(ctx context.Context, t *entity.Type, sc Scope, idOrName string) (map[string]any, error) {
	pid, err := a.parentID(ctx, sc)
	if err != nil {
		return nil, err
	}
	if idOrName, err = certBySNI(ctx, a.storeGetter(), t, idOrName); err != nil {
		return nil, err
	}
	e, err := a.store.Get(ctx, t, idOrName, sc.filter(pid))
	if err != nil {
		return nil, err
	}
	e, live := liveView(t, e, a.now().Unix())
	if !live {
		return nil, store.ErrNotFound
	}
	return a.withSNIs(ctx, t, e)
}

// Page asks for a page of a list.
type Page struct {
	Size   int
	Offset string // token of a previous answer; "" for the first page
	Tags   []string
	AllOf  bool // every tag (true) or any of them
}

// List returns a page of entities of t within sc (canonical JSON, by id)
// and the offset of the next page ("" when none).
func (a *App) List(ctx context.Context, t *entity.Type, sc Scope, p Page) ([]json.RawMessage, string, error) {
	pid, err := a.parentID(ctx, sc)
	if err != nil {
		return nil, "", err
	}
	for _, tag := range p.Tags {
		if strings.IndexByte(tag, 0) >= 0 {
			return nil, "", entity.Errors{"tags": entity.MsgNUL}
		}
	}
	f := sc.filter(pid)
	f.Tags, f.And = p.Tags, p.AllOf
	page, next, err := a.store.List(ctx, t, f, p.Size, p.Offset)
	if err != nil {
		return nil, "", err
	}
	if page, err = liveList(t, page, a.now().Unix()); err != nil {
		return nil, "", err
	}
	page, err = a.listWithSNIs(ctx, t, page)
	return page, next, err
}

// parentID resolves the parent of a nested URL outside a write ("" for a
// top-level URL); store.ErrNotFound when it does not exist.
func (a *App) parentID(ctx context.Context, sc Scope) (string, error) {
	if !sc.nested() {
		return "", nil
	}
	p, err := a.store.Get(ctx, sc.Parent, sc.Key, store.Filter{})
	if err != nil {
		return "", err
	}
	return entity.ID(p)
}
