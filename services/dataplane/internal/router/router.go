package router

import (
	"strings"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot/sorted"
)

// Router is an immutable route index. The zero value is not usable; start
// from New.
type Router struct {
	routes sorted.Map[*Route]  // id -> route
	hosts  sorted.Map[*bucket] // plain host -> routes naming it
	wild   sorted.Map[*Route]  // id -> routes with a wildcard host
	any    *bucket             // routes without hosts
}

// bucket indexes routes by path: prefix paths, together with regex paths
// under their literal prefixes, in a sorted map looked up with the
// request path's prefixes of the lengths the bucket's keys have; the rest
// (no paths, regexes without a literal prefix) in a second map.
type bucket struct {
	prefix sorted.Map[[]*Route] // prefix path -> routes with it
	lens   []keyLen             // the lengths of prefix's keys, ascending
	other  sorted.Map[*Route]   // id -> routes considered for every path: no path, or a regex path without a literal prefix
}

// keyLen counts the keys of one length in a bucket's prefix map.
type keyLen struct{ n, keys int }

func newBucket() *bucket {
	return &bucket{prefix: sorted.New[[]*Route](), other: sorted.New[*Route]()}
}

// New returns an empty router.
func New() *Router {
	return &Router{routes: sorted.New[*Route](), hosts: sorted.New[*bucket](), wild: sorted.New[*Route](), any: newBucket()}
}

// Len is the number of routes.
func (rt *Router) Len() int { return rt.routes.Len() }

// Get returns a route by id.
func (rt *Router) Get(id string) (*Route, bool) { return rt.routes.Get(id) }

// Builder applies several changes to a router before sealing a new one.
type Builder struct {
	routes sorted.Map[*Route]
	hosts  sorted.Map[*bucket]
	wild   sorted.Map[*Route]
	any    *bucket
}

// Builder starts a batch of changes on rt; rt itself never changes.
func (rt *Router) Builder() *Builder {
	return &Builder{routes: rt.routes.Edit(), hosts: rt.hosts.Edit(), wild: rt.wild.Edit(), any: rt.any}
}

// Upsert adds or replaces a route.
func (b *Builder) Upsert(r *Route) {
	b.Delete(r.ID)
	b.routes.Set(r.ID, r)
	if len(r.Hosts) == 0 {
		b.any = b.any.with(r)
		return
	}
	for _, h := range r.plainHosts {
		bk, ok := b.hosts.Get(h)
		if !ok {
			bk = newBucket()
		}
		b.hosts.Set(h, bk.with(r))
	}
	if len(r.wildHosts) > 0 {
		b.wild.Set(r.ID, r)
	}
}

// Delete removes a route by id (no-op when absent).
func (b *Builder) Delete(id string) {
	old, ok := b.routes.Get(id)
	if !ok {
		return
	}
	b.routes.Delete(id)
	if len(old.Hosts) == 0 {
		b.any = b.any.without(old)
		return
	}
	for _, h := range old.plainHosts {
		if bk, ok := b.hosts.Get(h); ok {
			if nb := bk.without(old); nb.empty() {
				b.hosts.Delete(h)
			} else {
				b.hosts.Set(h, nb)
			}
		}
	}
	b.wild.Delete(id)
}

// Router seals the changes into a new router.
func (b *Builder) Router() *Router {
	return &Router{routes: b.routes, hosts: b.hosts, wild: b.wild, any: b.any}
}

func (bk *bucket) empty() bool { return bk.prefix.Len() == 0 && bk.other.Len() == 0 }

// indexKeys are the keys of the route in a bucket's prefix map: its
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

// countLen returns lens with the count of keys of length n moved by d,
// in a new slice (lens belongs to a published bucket).
func countLen(lens []keyLen, n, d int) []keyLen {
	out := make([]keyLen, 0, len(lens)+1)
	done := false
	for _, l := range lens {
		switch {
		case l.n == n:
			done = true
			if l.keys+d > 0 {
				out = append(out, keyLen{n, l.keys + d})
			}
			continue
		case l.n > n && !done:
			done = true
			if d > 0 {
				out = append(out, keyLen{n, d})
			}
		}
		out = append(out, l)
	}
	if !done && d > 0 {
		out = append(out, keyLen{n, d})
	}
	return out
}

func (bk *bucket) with(r *Route) *bucket {
	nb := *bk
	keys, scansAll := r.indexKeys()
	if scansAll {
		nb.other = nb.other.Edit()
		nb.other.Set(r.ID, r)
	}
	if len(keys) > 0 {
		nb.prefix = nb.prefix.Edit()
		for _, p := range keys {
			list, had := nb.prefix.Get(p)
			nl := make([]*Route, 0, len(list)+1)
			for _, x := range list {
				if x.ID != r.ID {
					nl = append(nl, x)
				}
			}
			nb.prefix.Set(p, append(nl, r))
			if !had {
				nb.lens = countLen(nb.lens, len(p), 1)
			}
		}
	}
	return &nb
}

func (bk *bucket) without(r *Route) *bucket {
	nb := *bk
	if _, ok := nb.other.Get(r.ID); ok {
		nb.other = nb.other.Edit()
		nb.other.Delete(r.ID)
	}
	if keys, _ := r.indexKeys(); len(keys) > 0 {
		nb.prefix = nb.prefix.Edit()
		for _, p := range keys {
			list, ok := nb.prefix.Get(p)
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
				nb.prefix.Delete(p)
				nb.lens = countLen(nb.lens, len(p), -1)
			} else {
				nb.prefix.Set(p, nl)
			}
		}
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
	if bk, ok := rt.hosts.Get(hostNoPort); ok {
		bk.candidates(req.Path, consider)
	}
	if hostNoPort != host {
		if bk, ok := rt.hosts.Get(host); ok {
			bk.candidates(req.Path, consider)
		}
	}
	rt.wild.Each(func(_ string, r *Route) bool { consider(r); return true })
	rt.any.candidates(req.Path, consider)
	return best
}

// candidates visits the routes with a key that starts path, shorter keys
// first, then those considered for every path.
func (bk *bucket) candidates(path string, fn func(*Route)) {
	for _, l := range bk.lens {
		if l.n > len(path) {
			break
		}
		if rs, ok := bk.prefix.Get(path[:l.n]); ok {
			for _, r := range rs {
				fn(r)
			}
		}
	}
	bk.other.Each(func(_ string, r *Route) bool { fn(r); return true })
}
