package rebuild

import (
	"fmt"
	"testing"

	"github.com/deltaplane/deltaplane/shared/wire"
)

// FuzzTable feeds a table arbitrary records (four bytes each: version,
// index, count, key; a key byte with the high bit set is a tombstone). It
// never panics; the result's entities all come from records at or below
// its version, its version is one whose every index was seen, and the
// resume offset, if any, is that of a record above it.
func FuzzTable(f *testing.F) {
	f.Add([]byte{1, 0, 1, 1, 2, 0, 1, 1, 3, 0, 1, 0x81, 2, 0, 1, 1})
	f.Add([]byte{1, 0, 2, 1, 1, 1, 2, 2, 2, 0, 2, 3})
	f.Add([]byte{5, 2, 3, 9, 4, 0, 1, 9, 4, 0, 2, 8})
	f.Fuzz(func(t *testing.T, data []byte) {
		tb := New()
		type seen struct {
			version uint64
			index   int
			count   int
		}
		var recs []seen
		valueVersion := map[string]map[string]uint64{} // key -> value -> version
		for off := 0; off+4 <= len(data); off += 4 {
			v := uint64(data[off]%8) + 1
			count := int(data[off+2]%4) + 1
			index := int(data[off+1]) % count
			key := fmt.Sprintf("services/k%d", data[off+3]&0x7f%16)
			var val []byte
			if data[off+3]&0x80 == 0 {
				val = []byte(fmt.Sprintf(`{"v":%d,"o":%d}`, v, off))
				if valueVersion[key] == nil {
					valueVersion[key] = map[string]uint64{}
				}
				valueVersion[key][string(val)] = v
			}
			tb.Add(wire.DeltaHeader{Schema: wire.SchemaVersion, Version: v, Index: index, Count: count, Hash: wire.Hash(v)}, int64(off), key, val)
			recs = append(recs, seen{v, index, count})
		}
		r := tb.Result()
		ents, err := r.Entities()
		if err != nil {
			t.Fatal(err)
		}
		for k, val := range ents {
			if vv, ok := valueVersion[k][string(val)]; !ok || vv > r.Version {
				t.Fatalf("%s = %s (version %d) in the result of version %d", k, val, vv, r.Version)
			}
		}
		if r.Version > 0 {
			if r.Hash != wire.Hash(r.Version) {
				t.Fatalf("hash %d for version %d", r.Hash, r.Version)
			}
			// Some shape (count) of the version was seen whole.
			have := map[int]map[int]bool{}
			whole := false
			for _, s := range recs {
				if s.version == r.Version {
					if have[s.count] == nil {
						have[s.count] = map[int]bool{}
					}
					have[s.count][s.index] = true
					whole = whole || len(have[s.count]) == s.count
				}
			}
			if !whole {
				t.Fatalf("version %d returned without all its indexes: %v", r.Version, have)
			}
		}
		if off, ok := tb.Resume(r.Version); ok {
			if off < 0 || int(off)/4 >= len(recs) || recs[off/4].version <= r.Version {
				t.Fatalf("resume at %d, not a record above version %d", off, r.Version)
			}
		}
	})
}
