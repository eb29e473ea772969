package snapshot

import (
	"bytes"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestValuesRoundTrip: every value a snapshot stores reads back byte for
// byte (JSON or not, empty, larger than the dictionary), and ForEachPrefix
// visits exactly the keys with the prefix, in order.
func TestValuesRoundTrip(t *testing.T) {
	rnd := make([]byte, 70000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range rnd {
		rnd[i] = byte(r.UintN(256))
	}
	vals := map[string][]byte{
		"services/a":     []byte(`{"id":"a","host":"h"}`),
		"services/b":     []byte(`not json at all`),
		"services/c":     {},
		"certificates/x": []byte(`{"id":"x","cert":"` + strings.Repeat("MIIB", 30000) + `"}`),
		"consumers/r":    rnd,
		"routes/z":       []byte(valueDict),
	}
	var writes []Write
	for k, v := range vals {
		writes = append(writes, Write{Key: k, Value: v})
	}
	s, _, _ := Empty().Apply(1, writes)
	for k, v := range vals {
		got, ok := s.Entity(k)
		if !ok || !bytes.Equal(got, v) {
			t.Errorf("%s: %d bytes back, want %d", k, len(got), len(v))
		}
	}
	var keys []string
	s.ForEachPrefix("services/", func(k string, v []byte) bool {
		keys = append(keys, k)
		if !bytes.Equal(v, vals[k]) {
			t.Errorf("%s: value differs", k)
		}
		return true
	})
	if strings.Join(keys, " ") != "services/a services/b services/c" {
		t.Fatalf("prefix visited %v", keys)
	}
	n := 0
	s.ForEachPrefix("services/", func(string, []byte) bool { n++; return false })
	if n != 1 {
		t.Fatalf("visited %d after false", n)
	}
}

// TestDictionaryHasCanonicalForms: the dictionary holds each sample
// entity twice, the second time with sorted keys (the Admin API's form).
func TestDictionaryHasCanonicalForms(t *testing.T) {
	d := string(dictionary())
	for _, want := range []string{
		`{"ca_certificates":null,"client_certificate":null,"connect_timeout":60000,"created_at":1700000000,`,
		`"healthchecks":{"active":{"concurrency":10,`,
		valueDict,
	} {
		if !strings.Contains(d, want) {
			t.Errorf("dictionary lacks %.60s", want)
		}
	}
}
