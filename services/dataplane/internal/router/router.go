package router

import (
	"strings"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

// Router is an immutable route index. The zero value is not usable; start
// from New.
type Router struct {
	routes *iradix.Tree[*Route]  // id -> route
	hosts  *iradix.Tree[*bucket] // plain host -> routes naming it
	wild   *iradix.Tree[*Route]  // id -> routes with a wildcard host
	any    *bucket               // routes without hosts
}

// bucket indexes routes by path: prefix paths in a radix tree walked along
// the request path together with regex paths under their literal
// prefixes; the rest (no paths, regexes without a literal prefix) in a list.
type bucket struct {
	prefix *iradix.Tree[[]*Route] // prefix path -> routes with it
	other  *iradix.Tree[*Route]   // id -> routes considered for every path: no path, or a regex path without a literal prefix
}

var emptyBucket = &bucket{prefix: iradix.New[[]*Route](), other: iradix.New[*Route]()}

// New returns an empty router.
func New() *Router {
	return &Router{routes: iradix.New[*Route](), hosts: iradix.New[*bucket](), wild: iradix.New[*Route](), any: emptyBucket}
}

// Len is the number of routes.
func (rt *Router) Len() int { return rt.routes.Len() }

// Get returns a route by id.
func (rt *Router) Get(id string) (*Route, bool) { return rt.routes.Get([]byte(id)) }

// Builder applies several changes to a router before sealing a new one.
type Builder struct {
	routes *iradix.Txn[*Route]
	hosts  *iradix.Txn[*bucket]
	wild   *iradix.Txn[*Route]
	any    *bucket
}

// Builder starts a batch of changes on rt; rt itself never changes.
func (rt *Router) Builder() *Builder {
	return &Builder{routes: rt.routes.Txn(), hosts: rt.hosts.Txn(), wild: rt.wild.Txn(), any: rt.any}
}

// Upsert adds or replaces a route.
func (b *Builder) Upsert(r *Route) {
	b.Delete(r.ID)
	b.routes.Insert([]byte(r.ID), r)
	if len(r.Hosts) == 0 {
		b.any = b.any.with(r)
		return
	}
	for _, h := range r.plainHosts {
		bk, ok := b.hosts.Get([]byte(h))
		if !ok {
			bk = emptyBucket
		}
		b.hosts.Insert([]byte(h), bk.with(r))
	}
	if len(r.wildHosts) > 0 {
		b.wild.Insert([]byte(r.ID), r)
	}
}

// Delete removes a route by id (no-op when absent).
func (b *Builder) Delete(id string) {
	old, ok := b.routes.Get([]byte(id))
	if !ok {
		return
	}
	b.routes.Delete([]byte(id))
	if len(old.Hosts) == 0 {
		b.any = b.any.without(old)
		return
	}
	for _, h := range old.plainHosts {
		if bk, ok := b.hosts.Get([]byte(h)); ok {
			if nb := bk.without(old); nb.empty() {
				b.hosts.Delete([]byte(h))
			} else {
				b.hosts.Insert([]byte(h), nb)
			}
		}
	}
	b.wild.Delete([]byte(id))
}

// Router seals the changes into a new router.
func (b *Builder) Router() *Router {
	return &Router{routes: b.routes.Commit(), hosts: b.hosts.Commit(), wild: b.wild.Commit(), any: b.any}
}

func (bk *bucket) empty() bool { return bk.prefix.Len() == 0 && bk.other.Len() == 0 }

// indexKeys are the keys of the route in a bucket's prefix tree: its
// prefix paths and the literal prefixes of its regex paths (every match
// of a regex path starts with its prefix), so a request considers only
// the routes whose keys start its path. scansAll: the route is also
// considered for every request (no path at all, or a regex path without
// a literal prefix).
func (r *Route) indexKeys() (keys []string, scansAll bool) {
	keys = append(keys, r.Paths...)
	for _, rp := range r.Regexes {
		if rp.prefix == "" {
			scansAll = true
		} else {
			keys = append(keys, rp.prefix)
		}
	}
	return keys, scansAll || len(r.Paths)+len(r.Regexes) == 0
}

func (bk *bucket) with(r *Route) *bucket {
	nb := *bk
	keys, scansAll := r.indexKeys()
	if scansAll {
		nb.other, _, _ = nb.other.Insert([]byte(r.ID), r)
	}
	if len(keys) > 0 {
		txn := nb.prefix.Txn()
		for _, p := range keys {
			list, _ := txn.Get([]byte(p))
			nl := make([]*Route, 0, len(list)+1)
			for _, x := range list {
				if x.ID != r.ID {
					nl = append(nl, x)
				}
			}
			txn.Insert([]byte(p), append(nl, r))
		}
		nb.prefix = txn.Commit()
	}
	return &nb
}

func (bk *bucket) without(r *Route) *bucket {
	nb := *bk
	nb.other, _, _ = nb.other.Delete([]byte(r.ID))
	if keys, _ := r.indexKeys(); len(keys) > 0 {
		txn := nb.prefix.Txn()
		for _, p := range keys {
			list, ok := txn.Get([]byte(p))
			if !ok {
				continue
			}
			nl := make([]*Route, 0, len(list))
			for _, x := range list {
				if x.ID != r.ID {
					nl = append(nl, x)
				}
			}
			if len(nl) == 0 {
				txn.Delete([]byte(p))
			} else {
				txn.Insert([]byte(p), nl)
			}
		}
		nb.prefix = txn.Commit()
	}
	return &nb
}

// Match finds the best route for the request, or nil.
func (rt *Router) Match(req *Request) *Match {
	host := strings.ToLower(req.Host)
	hostNoPort := hostWithoutPort(host)
	var best *Match
	consider := func(r *Route) {
		m, ok := r.match(req, host, hostNoPort)
		if ok && (best == nil || better(&m, best)) {
			best = &m
		}
	}
	if bk, ok := rt.hosts.Get([]byte(hostNoPort)); ok {
		bk.candidates(req.Path, consider)
	}
	if hostNoPort != host {
		if bk, ok := rt.hosts.Get([]byte(host)); ok {
			bk.candidates(req.Path, consider)
		}
	}
	it := rt.wild.Root().Iterator()
	for _, r, ok := it.Next(); ok; _, r, ok = it.Next() {
		consider(r)
	}
	rt.any.candidates(req.Path, consider)
	return best
}

func (bk *bucket) candidates(path string, fn func(*Route)) {
	bk.prefix.Root().WalkPath([]byte(path), func(_ []byte, rs []*Route) bool {
		for _, r := range rs {
			fn(r)
		}
		return false
	})
	it := bk.other.Root().Iterator()
	for _, r, ok := it.Next(); ok; _, r, ok = it.Next() {
		fn(r)
	}
}
