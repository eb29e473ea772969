package snapshot

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/router"
	"github.com/deltaplane/deltaplane/shared/wire"
)

func w(k, v string) Write { return Write{Key: k, Value: []byte(v)} }

func TestApplyKeepsHashAndIndexes(t *testing.T) {
	s0 := Empty()
	s1, ev1, errs := s0.Apply(1, []Write{
		w("services/s", `{"id":"s","host":"up","port":80}`),
		w("routes/r", `{"id":"r","paths":["/a"],"service":{"id":"s"}}`),
		w("upstreams/u", `{"id":"u","name":"Up"}`),
		w("targets/t1", `{"id":"t1","target":"10.0.0.1:80","weight":100,"upstream":{"id":"u"}}`),
		w("targets/t2", `{"id":"t2","target":"10.0.0.2","weight":50,"upstream":{"id":"u"}}`),
		w("consumers/c", `{"id":"c","username":"alice"}`),
		w("keyauth_credentials/k", `{"id":"k","key":"abc","consumer":{"id":"c"}}`),
		w("plugins/p", `{"id":"p","name":"key-auth","route":{"id":"r"},"config":{}}`),
	})
	if len(errs) > 0 || len(ev1) != 8 {
		t.Fatalf("errs %v events %d", errs, len(ev1))
	}
	var want wire.Hash
	s1.ForEach(func(k string, v []byte) bool { want = want.Add(wire.EntityHash(k, v)); return true })
	if s1.Hash != want || s1.Version != 1 || s1.Len() != 8 {
		t.Fatalf("hash %s want %s version %d len %d", s1.Hash, want, s1.Version, s1.Len())
	}
	up, ok := s1.Upstream("up")
	if !ok || up.TotalWeight != 150 || len(up.Targets) != 2 || up.Targets[1].Target != "10.0.0.2:8000" {
		t.Fatalf("upstream %+v", up)
	}
	if c, ok := s1.KeyAuth("abc"); !ok || c.ConsumerID != "c" {
		t.Fatal("credential index")
	}
	n := 0
	s1.Plugins(ScopeRoute, "r", func(*Plugin) { n++ })
	if n != 1 {
		t.Fatalf("route plugins %d", n)
	}

	s2, ev2, _ := s1.Apply(2, []Write{
		{Key: "targets/t2"},
		w("keyauth_credentials/k", `{"id":"k","key":"xyz","consumer":{"id":"c"}}`),
		{Key: "plugins/p"},
		w("routes/r", `{"id":"r","paths":["/b"],"service":{"id":"s"}}`),
	})
	if string(ev2[0].Old) == "" || ev2[0].New != nil {
		t.Fatalf("delete event %+v", ev2[0])
	}
	cases := []struct {
		name string
		ok   bool
	}{
		{"old snapshot keeps t2", func() bool { u, _ := s1.Upstream("up"); return len(u.Targets) == 2 }()},
		{"new snapshot lost t2", func() bool { u, _ := s2.Upstream("up"); return len(u.Targets) == 1 && u.TotalWeight == 100 }()},
		{"old key gone", func() bool { _, ok := s2.KeyAuth("abc"); return !ok }()},
		{"new key there", func() bool { _, ok := s2.KeyAuth("xyz"); return ok }()},
		{"old snapshot keeps old key", func() bool { _, ok := s1.KeyAuth("abc"); return ok }()},
		{"plugin gone", func() bool { n := 0; s2.Plugins(ScopeRoute, "r", func(*Plugin) { n++ }); return n == 0 }()},
		{"route moved", func() bool {
			m := s2.Router().Match(&router.Request{Method: "GET", Host: "x", Path: "/b", Header: http.Header{}, Scheme: "http"})
			return m != nil && m.Route.ID == "r"
		}()},
		{"hash incremental equals full", func() bool {
			var h wire.Hash
			s2.ForEach(func(k string, v []byte) bool { h = h.Add(wire.EntityHash(k, v)); return true })
			return h == s2.Hash
		}()},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !c.ok {
				t.Fail()
			}
		})
	}
}

func TestBadEntityIsKeptAndReported(t *testing.T) {
	s, _, errs := Empty().Apply(1, []Write{w("routes/bad", `{"id":"bad","paths":["~/(x"]}`)})
	if len(errs) != 1 || s.Len() != 1 || s.Router().Len() != 0 {
		t.Fatalf("errs %v len %d routes %d", errs, s.Len(), s.Router().Len())
	}
}

// config30k is a configuration of 30,000 entities: 5,000 services with
// 15,000 routes, 5,000 consumers with key-auth credentials.
func config30k() map[string][]byte {
	ents := map[string][]byte{}
	for i := range 5000 {
		ents[fmt.Sprintf("services/s%05d", i)] = fmt.Appendf(nil, `{"id":"s%05d","name":"svc-%d","host":"upstream-%d.internal","port":8080,"protocol":"http","path":"/v1","retries":5,"connect_timeout":60000,"read_timeout":60000,"write_timeout":60000,"enabled":true}`, i, i, i)
		ents[fmt.Sprintf("consumers/c%05d", i)] = fmt.Appendf(nil, `{"id":"c%05d","username":"user-%d"}`, i, i)
		ents[fmt.Sprintf("keyauth_credentials/k%05d", i)] = fmt.Appendf(nil, `{"id":"k%05d","key":"key-%d","consumer":{"id":"c%05d"}}`, i, i, i)
	}
	for i := range 15000 {
		ents[fmt.Sprintf("routes/r%05d", i)] = fmt.Appendf(nil, `{"id":"r%05d","name":"route-%d","hosts":["h%d.example.com"],"paths":["/api/%d"],"methods":["GET","POST"],"strip_path":true,"service":{"id":"s%05d"}}`, i, i, i%500, i, i%5000)
	}
	return ents
}

// BenchmarkApplyOneChange30k is the in-memory part of applying a one-route
// batch to a 30k-entity configuration: content hash, entity table, router
// and indexes.
func BenchmarkApplyOneChange30k(b *testing.B) {
	base, errs := Build(1, config30k())
	if len(errs) > 0 || base.Len() != 30000 {
		b.Fatalf("build: %v, %d entities", errs, base.Len())
	}
	writes := [][]Write{
		{w("routes/r07777", `{"id":"r07777","name":"route-7777","hosts":["h277.example.com"],"paths":["/api/7777","/moved"],"methods":["GET"],"strip_path":true,"service":{"id":"s02777"}}`)},
		{w("routes/r07777", `{"id":"r07777","name":"route-7777","hosts":["h277.example.com"],"paths":["/api/7777"],"methods":["GET","POST"],"strip_path":true,"service":{"id":"s02777"}}`)},
	}
	cur := base
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		cur, _, _ = cur.Apply(cur.Version+1, writes[i%2])
		i++
	}
	if cur.Len() != 30000 {
		b.Fatal("entity count changed")
	}
}

// BenchmarkBuild30k is what the full-sync baseline does per change: build
// the whole 30k-entity configuration from scratch.
func BenchmarkBuild30k(b *testing.B) {
	ents := config30k()
	b.ReportAllocs()
	for b.Loop() {
		if s, _ := Build(2, ents); s.Len() != 30000 {
			b.Fatal("short build")
		}
	}
}

func TestCheck(t *testing.T) {
	cases := []struct {
		key, value string
		nilValue   bool
		kind       string // "" = usable
	}{
		{key: "services/a", value: `{"id":"a","host":"h"}`},
		{key: "routes/r", nilValue: true},
		{key: "certificates/c", value: `{"id":"c"}`},
		{key: "nokey", value: `{}`, kind: "key"},
		{key: "widgets/w", value: `{}`, kind: "type"},
		{key: "services/a", value: `{"id":`, kind: "entity"},
		{key: "certificates/c", value: `[1]`, kind: "entity"},
		{key: "services/a", value: `{"id":"a","port":"x"}`, kind: "entity"},
		{key: "routes/r", value: `{"id":"r","paths":"x"}`, kind: "entity"},
	}
	for _, tc := range cases {
		t.Run(tc.key+" "+tc.value, func(t *testing.T) {
			var v []byte
			if !tc.nilValue {
				v = []byte(tc.value)
			}
			err := Check(tc.key, v)
			var ce *CheckError
			switch {
			case tc.kind == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tc.kind != "" && (!errors.As(err, &ce) || ce.Kind != tc.kind):
				t.Fatalf("err %v, want kind %s", err, tc.kind)
			}
		})
	}
}

// TestUpstreamHealthchecksKept: an upstream keeps its healthchecks only
// when they check something; Kong's default record (stored by the Admin
// API on every upstream) checks nothing and costs no memory here.
func TestUpstreamHealthchecksKept(t *testing.T) {
	def := `{"active":{"concurrency":10,"healthy":{"http_statuses":[200,302],"interval":0,"successes":0},"http_path":"/","timeout":1,"type":"http","unhealthy":{"http_failures":0,"interval":0,"tcp_failures":0,"timeouts":0}},"passive":{"healthy":{"successes":0},"type":"http","unhealthy":{"http_failures":0,"tcp_failures":0,"timeouts":0}},"threshold":0}`
	for _, c := range []struct {
		hc   string
		kept bool
	}{
		{`null`, false},
		{def, false},
		{`{"active":{"healthy":{"interval":5}}}`, true},
		{`{"passive":{"unhealthy":{"tcp_failures":1}}}`, true},
		// Healthchecks that do not decode are kept for internal/health to
		// report, as they are.
		{`"x"`, true},
		{`{"active":{"healthy":{"interval":"5"}}}`, true},
	} {
		s, errs := Build(1, map[string][]byte{"upstreams/u": []byte(`{"id":"u","name":"pool","healthchecks":` + c.hc + `}`)})
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		u, _ := s.UpstreamByID("u")
		if (u.Healthchecks != nil) != c.kept {
			t.Errorf("%s: kept %v, want %v", c.hc, u.Healthchecks != nil, c.kept)
		}
		if c.kept && string(u.Healthchecks) != c.hc {
			t.Errorf("kept %s, want %s", u.Healthchecks, c.hc)
		}
	}
}
