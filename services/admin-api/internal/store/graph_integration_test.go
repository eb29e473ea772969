//go:build integration

package store_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/entity"
	"github.com/deltaplane/deltaplane/shared/schema"
)

// TestForeignKeysFollowTheGraph: the migrations' foreign keys are the
// entity graph's references, and nothing else: one per single reference
// (<field>_id, NOT NULL when required, RESTRICT even when the graph
// cascades, since Delete walks cascades itself so that every deleted child
// gets its outbox event), two per reference list (its join table's owner,
// CASCADE, and ref, RESTRICT).
func TestForeignKeysFollowTheGraph(t *testing.T) {
	_, db := open(t)
	var rows []struct {
		Tbl, Col, Ref, Del string
		NotNull            bool
	}
	if err := db.WithContext(t.Context()).Raw(`
		SELECT c.conrelid::regclass::text AS tbl, a.attname AS col, c.confrelid::regclass::text AS ref,
		       c.confdeltype::text AS del, a.attnotnull AS not_null
		FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
		WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace`).Scan(&rows).Error; err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s.%s -> %s on delete %s not null %v", r.Tbl, r.Col, r.Ref, r.Del, r.NotNull))
	}
	for _, st := range schema.Types() {
		for _, r := range st.Refs {
			if r.List {
				d, _ := entity.Lookup(r.From)
				f, _ := d.Field(r.Field)
				jt := entity.JoinTable(d, f)
				want = append(want,
					fmt.Sprintf("%s.owner_id -> %s on delete c not null true", jt, r.From),
					fmt.Sprintf("%s.ref_id -> %s on delete r not null true", jt, r.To))
				continue
			}
			want = append(want, fmt.Sprintf("%s.%s_id -> %s on delete r not null %v", r.From, r.Field, r.To, r.Required))
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("foreign keys:\n got %q\nwant %q", got, want)
	}
}
