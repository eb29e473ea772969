package entity

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzNormalize feeds arbitrary JSON objects to every entity type: the
// result is a complete entity or violations, never a panic.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{`{"host":"a"}`, `{"url":"http://x:1/p"}`, `{"paths":["/a"],"headers":{"x":["1"]}}`,
		`{"name":"rate-limiting","config":{"minute":1,"redis":{"port":1}}}`, `{"target":"[::1]:80"}`, `{"tags":[1,null]}`,
		`{"sources":[{"ip":"10.0.0.0/8"}],"protocols":["tcp"]}`, `{"config":{"redis":null}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		var in map[string]any
		if d.Decode(&in) != nil || in == nil {
			return
		}
		for _, typ := range Types {
			e, errs := Normalize(typ, in, nil, map[string]any{"id": "8c8a7b0e-0c1f-4b5e-9d43-0b6a3c6f0e11", "created_at": int64(1), "updated_at": int64(1)})
			if errs == nil {
				if len(e) < len(typ.Fields) {
					t.Fatalf("%s: incomplete entity %v", typ.Name, e)
				}
				if _, err := json.Marshal(e); err != nil {
					t.Fatalf("%s: %v", typ.Name, err)
				}
				_ = errs.Message()
			}
		}
	})
}
