package snapshot

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"sort"
	"testing"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/router"
	"github.com/deltaplane/deltaplane/shared/wire"
)

// mixedConfig has every entity type, entities that cannot be interpreted,
// two credentials with the same key and two SNIs with the same name (the
// later key wins in both, as in Build's key order).
func mixedConfig() map[string][]byte {
	ents := map[string][]byte{}
	add := func(k, v string) { ents[k] = []byte(v) }
	for i := range 1000 { // over 4096 entities: Finish works in chunks of 4096
		add(fmt.Sprintf("services/s%03d", i), fmt.Sprintf(`{"id":"s%03d","name":"svc-%d","host":"up-%d","port":8080,"path":"/v1"}`, i, i, i))
		add(fmt.Sprintf("routes/r%03d", i), fmt.Sprintf(`{"id":"r%03d","hosts":["h%d.example.com"],"paths":["/api/%d","~/re/%d/(?<n>\\d+)$"],"methods":["GET"],"service":{"id":"s%03d"}}`, i, i%7, i, i, i))
		add(fmt.Sprintf("consumers/c%03d", i), fmt.Sprintf(`{"id":"c%03d","username":"user-%d"}`, i, i))
		add(fmt.Sprintf("keyauth_credentials/k%03d", i), fmt.Sprintf(`{"id":"k%03d","key":"key-%d","consumer":{"id":"c%03d"}}`, i, i%290, i))
		add(fmt.Sprintf("plugins/p%03d", i), fmt.Sprintf(`{"id":"p%03d","name":"rate-limiting","route":{"id":"r%03d"},"config":{"minute":%d},"enabled":%v}`, i, i, i, i%5 != 0))
	}
	for i := range 20 {
		add(fmt.Sprintf("upstreams/u%02d", i), fmt.Sprintf(`{"id":"u%02d","name":"Pool-%d","host_header":"h%d"}`, i, i, i))
		for j := range 3 {
			add(fmt.Sprintf("targets/t%02d-%d", i, j), fmt.Sprintf(`{"id":"t%02d-%d","target":"10.0.%d.%d","weight":%d,"upstream":{"id":"u%02d"}}`, i, j, i, j, j*50, i))
		}
		add(fmt.Sprintf("certificates/x%02d", i), fmt.Sprintf(`{"id":"x%02d","cert":"C%d","key":"K%d"}`, i, i, i))
		add(fmt.Sprintf("snis/n%02d", i), fmt.Sprintf(`{"id":"n%02d","name":"*.d%d.example","certificate":{"id":"x%02d"}}`, i, i%15, i))
	}
	add("plugins/global", `{"id":"global","name":"key-auth","config":{}}`)
	add("plugins/svc", `{"id":"svc","name":"key-auth","service":{"id":"s001"},"config":{}}`)
	add("plugins/cons", `{"id":"cons","name":"rate-limiting","consumer":{"id":"c001"},"config":{}}`)
	add("routes/bad", `{"id":"bad","paths":["~/(x"]}`)
	add("services/notjson", `not json`)
	add("targets/badweight", `{"id":"badweight","weight":"x"}`)
	return ents
}

// sameSnapshot fails when a and b differ in anything a reader can see.
func sameSnapshot(t *testing.T, a, b *Snapshot) {
	t.Helper()
	if a.Version != b.Version || a.Hash != b.Hash || a.Len() != b.Len() || a.Router().Len() != b.Router().Len() {
		t.Fatalf("version %d/%d hash %s/%s len %d/%d routes %d/%d", a.Version, b.Version, a.Hash, b.Hash, a.Len(), b.Len(), a.Router().Len(), b.Router().Len())
	}
	var ka, kb []string
	a.ForEach(func(k string, v []byte) bool {
		ka = append(ka, k)
		if w, ok := b.Entity(k); !ok || string(w) != string(v) {
			t.Errorf("entity %s: %q / %q", k, v, w)
		}
		return true
	})
	b.ForEach(func(k string, _ []byte) bool { kb = append(kb, k); return true })
	if !reflect.DeepEqual(ka, kb) || !sort.StringsAreSorted(ka) {
		t.Fatalf("keys differ or not in order")
	}
	same := func(what string, x, y any) {
		t.Helper()
		if !reflect.DeepEqual(x, y) {
			t.Errorf("%s: %+v / %+v", what, x, y)
		}
	}
	for _, k := range ka {
		typ, id, _ := wire.SplitKey(k)
		raw, _ := a.Entity(k)
		switch typ {
		case wire.TypeService:
			x, ok1 := a.Service(id)
			y, ok2 := b.Service(id)
			same(k, []any{x, ok1}, []any{y, ok2})
		case wire.TypeRoute:
			x, ok1 := a.Router().Get(id)
			y, ok2 := b.Router().Get(id)
			if ok1 != ok2 || (ok1 && !reflect.DeepEqual(x.Paths, y.Paths)) {
				t.Errorf("%s: route %v/%v", k, ok1, ok2)
			}
		case wire.TypeUpstream:
			x, ok1 := a.UpstreamByID(id)
			y, ok2 := b.UpstreamByID(id)
			if ok1 != ok2 || (ok1 && (x.Name != y.Name || x.TotalWeight != y.TotalWeight || !reflect.DeepEqual(x.Targets, y.Targets))) {
				t.Errorf("%s: upstream %+v / %+v", k, x, y)
			}
			if ok1 {
				u1, _ := a.Upstream(x.Name)
				u2, _ := b.Upstream(x.Name)
				same(k+" by name", u1.ID, u2.ID)
			}
		case wire.TypeConsumer:
			x, ok1 := a.Consumer(id)
			y, ok2 := b.Consumer(id)
			same(k, []any{x, ok1}, []any{y, ok2})
		case wire.TypePlugin:
			x, ok1 := a.Plugin(id)
			y, ok2 := b.Plugin(id)
			same(k, []any{x, ok1}, []any{y, ok2})
		case wire.TypeKeyAuth:
			var j keyAuthJSON
			if json.Unmarshal(raw, &j) == nil {
				x, ok1 := a.KeyAuth(j.Key)
				y, ok2 := b.KeyAuth(j.Key)
				same(k, []any{x, ok1}, []any{y, ok2})
			}
		case wire.TypeCertificate:
			x, ok1 := a.Certificate(id)
			y, ok2 := b.Certificate(id)
			if ok1 != ok2 || (ok1 && (x.Cert != y.Cert || x.Key != y.Key)) {
				t.Errorf("%s: certificate", k)
			}
		case wire.TypeSNI:
			if sn, err := ParseSNI(raw); err == nil {
				x, ok1 := a.SNI(sn.Name)
				y, ok2 := b.SNI(sn.Name)
				same(k, []any{x, ok1}, []any{y, ok2})
			}
		}
	}
	scopes := map[string][]string{ScopeGlobal: {""}, ScopeService: {"s001"}, ScopeConsumer: {"c001"}}
	a.ForEach(func(k string, _ []byte) bool {
		if typ, id, _ := wire.SplitKey(k); typ == wire.TypeRoute {
			scopes[ScopeRoute] = append(scopes[ScopeRoute], id)
		}
		return true
	})
	for scope, ids := range scopes {
		for _, id := range ids {
			var pa, pb []string
			a.Plugins(scope, id, func(p *Plugin) { pa = append(pa, p.ID) })
			b.Plugins(scope, id, func(p *Plugin) { pb = append(pb, p.ID) })
			same("plugins "+scope+"/"+id, pa, pb)
		}
	}
	for i := range 20 {
		name := fmt.Sprintf("x.d%d.example", i)
		x, ok1 := a.CertificateFor(name)
		y, ok2 := b.CertificateFor(name)
		if ok1 != ok2 || (ok1 && x.ID != y.ID) {
			t.Errorf("certificate for %s", name)
		}
	}
	for i := range 300 {
		for _, p := range []string{fmt.Sprintf("/api/%d/x", i), fmt.Sprintf("/re/%d/42", i), "/nothing"} {
			req := &router.Request{Method: "GET", Host: fmt.Sprintf("h%d.example.com", i%7), Path: p, Header: http.Header{}, Scheme: "http"}
			ma, mb := a.Router().Match(req), b.Router().Match(req)
			if (ma == nil) != (mb == nil) || (ma != nil && (ma.Route.ID != mb.Route.ID || !reflect.DeepEqual(ma.Captures, mb.Captures))) {
				t.Errorf("match %s %s: %+v / %+v", req.Host, p, ma, mb)
			}
		}
	}
}

func errStrings(errs []error) []string {
	var s []string
	for _, e := range errs {
		s = append(s, e.Error())
	}
	sort.Strings(s)
	return s
}

// TestBuilderSameAsApply: a Builder fed the entities in any order gives
// the snapshot (hash, entities, indexes, router, errors) that applying
// them in key order to Empty gives, and Build gives the same.
func TestBuilderSameAsApply(t *testing.T) {
	ents := mixedConfig()
	keys := make([]string, 0, len(ents))
	for k := range ents {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	writes := make([]Write, len(keys))
	for i, k := range keys {
		writes[i] = Write{Key: k, Value: ents[k]}
	}
	want, _, wantErrs := Empty().Apply(9, writes)
	if len(wantErrs) != 3 {
		t.Fatalf("reference errors %v", wantErrs)
	}

	for seed := range uint64(3) {
		order := append([]string(nil), keys...)
		rand.New(rand.NewPCG(seed, 1)).Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		b := NewBuilder(9)
		for _, k := range order {
			b.Add(k, ents[k])
		}
		got, errs := b.Finish()
		sameSnapshot(t, want, got)
		if !reflect.DeepEqual(errStrings(wantErrs), errStrings(errs)) {
			t.Fatalf("errors %v, want %v", errs, wantErrs)
		}
	}
	// Add copies: the caller may reuse its buffer at once.
	b := NewBuilder(9)
	var buf []byte
	for _, k := range keys {
		buf = append(buf[:0], ents[k]...)
		b.Add(k, buf)
		clear(buf)
	}
	reused, errs := b.Finish()
	sameSnapshot(t, want, reused)
	if !reflect.DeepEqual(errStrings(wantErrs), errStrings(errs)) {
		t.Fatalf("errors with a reused buffer %v, want %v", errs, wantErrs)
	}

	// Keys in order for more than a chunk (indexed as they come), then one
	// out of order: what was indexed is prepared again and sorted with the
	// rest.
	late := append(append(append([]string(nil), keys[:100]...), keys[101:]...), keys[100])
	b = NewBuilder(9)
	for _, k := range late {
		b.Add(k, ents[k])
	}
	if len(late) <= builderChunk {
		t.Fatalf("%d keys: not more than a chunk", len(late))
	}
	unsorted, errs := b.Finish()
	sameSnapshot(t, want, unsorted)
	if !reflect.DeepEqual(errStrings(wantErrs), errStrings(errs)) {
		t.Fatalf("errors with a late key %v, want %v", errs, wantErrs)
	}

	got, errs := Build(9, ents)
	sameSnapshot(t, want, got)
	if !reflect.DeepEqual(errStrings(wantErrs), errStrings(errs)) {
		t.Fatalf("Build errors %v, want %v", errs, wantErrs)
	}

	// The result then applies changes as any snapshot does.
	next, _, _ := got.Apply(10, []Write{{Key: "routes/r001"}, w("consumers/new", `{"id":"new"}`)})
	ref, _, _ := want.Apply(10, []Write{{Key: "routes/r001"}, w("consumers/new", `{"id":"new"}`)})
	sameSnapshot(t, ref, next)

	// An empty builder is the empty configuration.
	e, errs := NewBuilder(3).Finish()
	if len(errs) > 0 || e.Len() != 0 || e.Version != 3 || e.Hash != Empty().Hash {
		t.Fatalf("empty builder: %d entities, version %d, errs %v", e.Len(), e.Version, errs)
	}
}
