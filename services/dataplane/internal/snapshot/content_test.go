package snapshot

import (
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/shared/wire"
)

func TestContent(t *testing.T) {
	ents := map[string][]byte{
		"services/a":  []byte(`{"id":"a","host":"x","port":80}`),
		"consumers/c": []byte(`{"username":"u", "id":"c"}`),
		"services/b":  []byte(`not json`),
	}
	s, _ := Build(7, ents)
	v := s.Content("node-1")
	if v.NodeID != "node-1" || v.Version != 7 || v.Hash != s.Hash.String() || len(v.Entities) != 3 {
		t.Fatalf("view %+v", v)
	}
	// The digest does not depend on key order or spacing.
	want, _ := wire.ContentDigest([]byte(`{"id":"c","username":"u"}`))
	if v.Entities["consumers/c"] != want {
		t.Fatalf("consumers/c digest %s, want %s", v.Entities["consumers/c"], want)
	}
	if !strings.HasPrefix(v.Entities["services/b"], InvalidDigestPrefix) {
		t.Fatalf("services/b digest %s", v.Entities["services/b"])
	}
	if e := Empty().Content("n"); e.Entities == nil || len(e.Entities) != 0 || e.Version != 0 {
		t.Fatalf("empty view %+v", e)
	}
}
