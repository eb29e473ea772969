package router

import (
	"net/http"
	"reflect"
	"testing"
)

// TestPrefixLengthsFollowChanges: a bucket looks its keys up by the
// lengths they have; adding, replacing and deleting routes keeps those
// lengths exact (a length without keys is dropped, a new one added), so
// matching stays the same as a router built afresh.
func TestPrefixLengthsFollowChanges(t *testing.T) {
	b := New().Builder()
	for _, js := range []string{
		`{"id":"a","paths":["/a"]}`,
		`{"id":"ab","paths":["/ab"]}`,
		`{"id":"ab2","paths":["/ab"]}`,
		`{"id":"abc","paths":["/abc"]}`,
		`{"id":"re","paths":["~/abcd/\\d+$"]}`,
	} {
		b.Upsert(mustParse(t, js))
	}
	rt1 := b.Router()
	lens := func(rt *Router) []keyLen { return rt.any.lens }
	if want := []keyLen{{2, 1}, {3, 1}, {4, 1}, {6, 1}}; !reflect.DeepEqual(lens(rt1), want) {
		t.Fatalf("lens %v, want %v", lens(rt1), want)
	}
	b = rt1.Builder()
	b.Delete("ab")
	rt2 := b.Router()
	if want := []keyLen{{2, 1}, {3, 1}, {4, 1}, {6, 1}}; !reflect.DeepEqual(lens(rt2), want) {
		t.Fatalf("after deleting one of two /ab: lens %v, want %v", lens(rt2), want)
	}
	b = rt2.Builder()
	b.Delete("ab2")
	b.Upsert(mustParse(t, `{"id":"abc","paths":["/abcdefg"]}`))
	rt3 := b.Router()
	if want := []keyLen{{2, 1}, {6, 1}, {8, 1}}; !reflect.DeepEqual(lens(rt3), want) {
		t.Fatalf("lens %v, want %v", lens(rt3), want)
	}
	fresh := build(t, `{"id":"a","paths":["/a"]}`, `{"id":"abc","paths":["/abcdefg"]}`, `{"id":"re","paths":["~/abcd/\\d+$"]}`)
	for _, p := range []string{"/", "/a", "/ab/x", "/abc/x", "/abcdefg/h", "/abcd/12", "/abcd/x"} {
		for i, rt := range []*Router{rt3, fresh} {
			m := rt.Match(&Request{Method: "GET", Host: "h", Path: p, Header: http.Header{}, Scheme: "http"})
			id := ""
			if m != nil {
				id = m.Route.ID
			}
			want := map[string]string{"/": "", "/a": "a", "/ab/x": "a", "/abc/x": "a", "/abcdefg/h": "abc", "/abcd/12": "re", "/abcd/x": "a"}[p]
			if id != want {
				t.Errorf("router %d, %s: matched %q, want %q", i, p, id, want)
			}
		}
	}
	// The earlier routers are unchanged.
	if m := rt1.Match(&Request{Method: "GET", Host: "h", Path: "/ab/x", Header: http.Header{}, Scheme: "http"}); m == nil || m.Route.ID[:2] != "ab" {
		t.Fatalf("rt1 /ab/x: %+v", m)
	}
}
