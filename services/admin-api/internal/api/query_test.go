package api

import (
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
)

// TestFormExtraFields: a certificate's snis in a form body is a list, one
// name or several (Kong's snis[]=a&snis[]=b).
func TestFormExtraFields(t *testing.T) {
	for body, n := range map[string]int{"snis=a.example.com": 1, "snis[]=a.example.com": 1, "snis=a.example.com&snis=b.example.com": 2} {
		m, err := parseForm([]byte(body), entity.Certificate)
		if l, ok := m["snis"].([]any); err != nil || !ok || len(l) != n {
			t.Errorf("%s: %v (%v)", body, m, err)
		}
	}
}
