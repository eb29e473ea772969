package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/e2e/cluster"
)

// pgWait is how often the cluster database's client backends were seen
// in one state (pg_stat_activity sampled every 10 ms): a wait-event
// profile of the write run.
type pgWait struct {
	Event   string  `json:"event"`
	Samples int     `json:"samples"`
	Share   float64 `json:"share"`
}

// samplePGWaits samples pg_stat_activity of c's database until ctx ends.
func samplePGWaits(ctx context.Context, c *cluster.Cluster) []pgWait {
	db, err := c.DB()
	if err != nil {
		return nil
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	counts := map[string]int{}
	total := 0
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			var out []pgWait
			for k, n := range counts {
				out = append(out, pgWait{Event: k, Samples: n, Share: float64(n) / float64(max(1, total))})
			}
			slices.SortFunc(out, func(a, b pgWait) int { return b.Samples - a.Samples })
			return out
		case <-t.C:
		}
		rows, err := db.QueryContext(ctx, `SELECT state, coalesce(wait_event_type, ''), coalesce(wait_event, '')
			FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()`)
		if err != nil {
			continue
		}
		for rows.Next() {
			var state, typ, ev string
			if rows.Scan(&state, &typ, &ev) != nil {
				continue
			}
			if state == "idle" {
				continue
			}
			k := state
			if typ != "" {
				k = state + ": " + typ + "/" + ev
			} else if state == "active" {
				k = "active: on CPU"
			}
			counts[k]++
			total++
		}
		rows.Close()
	}
}

func pgWaitSummary(ws []pgWait, n int) string {
	var parts []string
	for _, w := range ws[:min(n, len(ws))] {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", w.Event, 100*w.Share))
	}
	return strings.Join(parts, ", ")
}
