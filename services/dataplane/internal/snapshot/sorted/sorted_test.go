package sorted

import (
	"fmt"
	"testing"
)

// TestEditLeavesOriginal: changes to an edited copy (inserts, updates,
// deletes, enough to split and merge nodes) never show in the map it was
// edited from, nor in an earlier copy.
func TestEditLeavesOriginal(t *testing.T) {
	m0 := New[int]()
	m1 := m0.Edit()
	for i := range 1000 {
		m1.Set(fmt.Sprintf("k%04d", i), i)
	}
	m2 := m1.Edit()
	for i := range 1000 {
		switch {
		case i%3 == 0:
			m2.Delete(fmt.Sprintf("k%04d", i))
		case i%3 == 1:
			m2.Set(fmt.Sprintf("k%04d", i), -i)
		}
	}
	m2.Set("a", 7)
	if m0.Len() != 0 || m1.Len() != 1000 || m2.Len() != 1000-334+1 {
		t.Fatalf("lens %d %d %d", m0.Len(), m1.Len(), m2.Len())
	}
	for i := range 1000 {
		k := fmt.Sprintf("k%04d", i)
		if v, ok := m1.Get(k); !ok || v != i {
			t.Fatalf("m1 %s = %d %v", k, v, ok)
		}
		v, ok := m2.Get(k)
		switch {
		case i%3 == 0 && ok, i%3 == 1 && v != -i, i%3 == 2 && v != i:
			t.Fatalf("m2 %s = %d %v", k, v, ok)
		}
	}
	if _, ok := m1.Get("a"); ok {
		t.Fatal("m1 has a")
	}
	var got []string
	m1.Prefix("k099", func(k string, _ int) bool { got = append(got, k); return true })
	if len(got) != 10 || got[0] != "k0990" || got[9] != "k0999" {
		t.Fatalf("prefix %v", got)
	}
	prev, n := "", 0
	m2.Each(func(k string, _ int) bool {
		if k <= prev {
			t.Fatalf("%s after %s", k, prev)
		}
		prev, n = k, n+1
		return n < 5
	})
	if n != 5 {
		t.Fatalf("each visited %d after false", n)
	}
}
