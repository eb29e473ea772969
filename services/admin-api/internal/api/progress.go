package api

import (
	"context"
	"time"
)

// followFor bounds how long an import's publication and applies are
// followed after its commit.
const followFor = 10 * time.Minute

// followImport reports, every second until every live data plane applied
// it (or followFor passed), how far the import that committed tx with
// rows changed entities went: events published (rows less the outbox
// backlog, which other writes in flight share; all of them once the relay
// published tx) and versions applied by the live data planes. It updates
// the import's progress on the cluster page and logs it.
func (a *API) followImport(tx uint64, rows int) {
	ctx, cancel := context.WithTimeout(context.Background(), followFor)
	defer cancel()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	start := time.Now()
	for {
		published := 0
		if ob, err := a.app.OutboxStatus(ctx); err == nil {
			if ob.PublishedTx >= tx {
				published = rows
			} else {
				published = max(0, rows-int(ob.Backlog))
			}
		}
		applied, live := 0, 0
		done := published == rows
		if a.cluster != nil {
			c := a.cluster.Change(tx, time.Now())
			applied, live = len(c.Applied), len(c.Applied)+len(c.Behind)
			done = done && c.Live && c.Version > 0
		}
		a.app.ImportFollowed(tx, published, applied, live)
		a.log.Info("declarative import propagating", "tx", tx, "events_published", published, "events", rows,
			"data_planes_applied", applied, "data_planes_live", live, "since_commit", time.Since(start).Round(time.Millisecond))
		if done {
			return
		}
		select {
		case <-ctx.Done():
			a.log.Warn("declarative import not live everywhere yet; no longer followed", "tx", tx, "after", followFor)
			return
		case <-tick.C:
		}
	}
}
