package api

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
)

// TestRequestPatternsAgreeWithDescriptors: every string a request
// schema's pattern matches is accepted by the entity descriptors'
// validation (entity.Normalize), so values a fuzzer generates from
// /openapi.json are valid: fixed samples, and random strings over an
// alphabet of the characters the checks care about (seeded).
func TestRequestPatternsAgreeWithDescriptors(t *testing.T) {
	const id = "8a6b0e8c-3bb5-4a3c-9d1e-0c0f4a1b2c3d"
	base := map[string]map[string]any{
		"services":  {"host": "a.internal"},
		"routes":    {"paths": []any{"/x"}},
		"upstreams": {"name": "u.internal"},
		"targets":   {"target": "a.internal", "upstream": map[string]any{"id": id}},
		"snis":      {"name": "a.example", "certificate": map[string]any{"id": id}},
	}
	samples := []string{"a", "A", "a.b", "a-b", "a_b", "a~b", "a b", "a,b", "a/b", "/", "/a", "/a/", "/a/b", "/a//b", "/./a", "/a/..",
		"/a%zz", "/a%20", "~/a", "GET", "get", "a.internal:8080", "a:0", "a:99999", "1.2.3.4", "-a", "a-", "a.", ".a", "ä", "a..b", "x:y", "a=b"}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "aZ09.-_~/:% ,=äGET"
	for i := 0; i < 3000; i++ {
		var b strings.Builder
		for n := 1 + rng.IntN(12); n > 0; n-- {
			r := []rune(alphabet)
			b.WriteRune(r[rng.IntN(len(r))])
		}
		samples = append(samples, b.String())
	}
	for key, pat := range fieldPatterns {
		typ, field, _ := strings.Cut(key, ".")
		if typ == "certificates" {
			typ, field = "snis", "name" // a certificate's snis are SNI names
		}
		elem := strings.HasSuffix(field, "[]")
		field = strings.TrimSuffix(field, "[]")
		et, ok := entity.Lookup(typ)
		if !ok {
			t.Fatalf("%s: no type %s", key, typ)
		}
		if _, ok := et.Field(field); !ok {
			t.Fatalf("%s: %s has no field %s", key, typ, field)
		}
		re := regexp.MustCompile(pat)
		matched := 0
		for _, s := range samples {
			if !re.MatchString(s) {
				continue
			}
			matched++
			in := map[string]any{}
			for k, v := range base[typ] {
				in[k] = v
			}
			if elem {
				in[field] = []any{s}
			} else {
				in[field] = s
			}
			if _, errs := entity.Normalize(et, in, nil, map[string]any{"id": id, "created_at": int64(1), "updated_at": int64(1)}); errs != nil {
				t.Errorf("%s: pattern %s matches %q, which is rejected: %s", key, pat, s, errs.Message())
			}
		}
		if matched < 3 {
			t.Errorf("%s: pattern %s matched only %d samples", key, pat, matched)
		}
	}
	for _, s := range samples {
		if regexp.MustCompile(patTag).MatchString(s) {
			in := map[string]any{"host": "a.internal", "tags": []any{s}}
			if _, errs := entity.Normalize(entity.Service, in, nil, map[string]any{"id": id, "created_at": int64(1), "updated_at": int64(1)}); errs != nil {
				t.Errorf("tags: pattern matches %q, which is rejected: %s", s, errs.Message())
			}
		}
	}
}
