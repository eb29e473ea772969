//go:build integration

package outbox_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/deltaplane/deltaplane/services/admin-api/internal/outbox"
	"github.com/deltaplane/deltaplane/services/admin-api/internal/testenv"
	"gorm.io/gorm"
)

// TestDrainReadsOneChunkOfALargeTransaction: the relay reads a large
// transaction 500 rows at a time from its cursor; each read must touch
// about those rows, whatever the planner's statistics (none yet right
// after a large import, before autovacuum analyzed the table), not every
// row of the transaction after the cursor.
func TestDrainReadsOneChunkOfALargeTransaction(t *testing.T) {
	db := testenv.OpenDatabase(t, testenv.Database(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
	const n, limit = 20000, 500
	for _, q := range []string{
		`ALTER TABLE outbox_rows SET (autovacuum_enabled = false)`,
		`ALTER TABLE outbox_tx SET (autovacuum_enabled = false)`,
		`INSERT INTO outbox_tx (seq, tx, batch, first, cnt) VALUES (1, 1, gen_random_uuid(), 1, 20000)`,
		`INSERT INTO outbox_rows (batch, idx, cnt, key, op, type, entity_id, entity, seq)
			SELECT gen_random_uuid(), g, 20000, 'routes/' || g, 'upsert', 'routes', g::text, convert_to(repeat('x', 300), 'UTF8'), 1
			FROM generate_series(0, 19999) g`,
	} {
		if err := db.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	// As the leader's connection reads.
	var plan string
	err := db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Exec(`SET LOCAL ` + outbox.DrainPlan).Error; err != nil {
			return err
		}
		return tx.Raw(`EXPLAIN (ANALYZE, FORMAT JSON) `+outbox.DrainSQL, 1, n/2, limit).Scan(&plan).Error
	})
	if err != nil {
		t.Fatal(err)
	}
	var root []struct{ Plan node }
	if err := json.Unmarshal([]byte(plan), &root); err != nil || len(root) != 1 {
		t.Fatalf("plan %q: %v", plan, err)
	}
	read := 0
	var walk func(p node)
	walk = func(p node) {
		if p.Relation == "outbox_rows" || strings.HasPrefix(p.Index, "outbox_rows") {
			read = max(read, int(p.Rows*p.Loops))
		}
		for _, c := range p.Plans {
			walk(c)
		}
	}
	walk(root[0].Plan)
	if read > 2*limit {
		t.Errorf("a read of %d rows from the middle of a %d-row transaction took %d rows from outbox_rows, want at most %d:\n%s", limit, n, read, 2*limit, plan)
	}
}

type node struct {
	Relation string  `json:"Relation Name"`
	Index    string  `json:"Index Name"`
	Rows     float64 `json:"Actual Rows"`
	Loops    float64 `json:"Actual Loops"`
	Plans    []node  `json:"Plans"`
}
