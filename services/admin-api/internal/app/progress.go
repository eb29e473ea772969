package app

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// This file tracks declarative imports while they run, for the cluster
// page and the log: rows written (in chunks of importChunk), then, once
// committed, its transaction (the API follows its publication and the
// data planes' applies).

// importChunk is how many entities one statement of an import writes;
// progress advances per chunk.
const importChunk = 1000

// keepImports is how many imports the page lists.
const keepImports = 5

// Progress is one declarative import's progress.
type Progress struct {
	ID          int       `json:"id"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished"` // zero while it runs
	Phase       string    `json:"phase"`    // planning, writing, committed, unchanged, failed
	Rows        int       `json:"rows"`     // entity rows to write (inserts, updates, deletes)
	RowsWritten int       `json:"rows_written"`
	Tx          uint64    `json:"tx"`
	Err         string    `json:"error,omitempty"`
	// Filled in by whoever follows the transaction (package api):
	Published int `json:"events_published"`
	Applied   int `json:"data_planes_applied"`
	Live      int `json:"data_planes_live"`
}

type imports struct {
	mu     sync.Mutex
	next   int
	recent []*Progress
	log    atomic.Pointer[slog.Logger]
}

// SetLogger makes imports log their progress on l.
func (a *App) SetLogger(l *slog.Logger) { a.imports.log.Store(l) }

func (im *imports) logger() *slog.Logger {
	if l := im.log.Load(); l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// start registers a new import.
func (im *imports) start(now time.Time) *Progress {
	im.mu.Lock()
	defer im.mu.Unlock()
	im.next++
	p := &Progress{ID: im.next, Started: now, Phase: "planning"}
	im.recent = append([]*Progress{p}, im.recent...)
	if len(im.recent) > keepImports {
		im.recent = im.recent[:keepImports]
	}
	return p
}

// update changes p under the lock.
func (im *imports) update(p *Progress, fn func(p *Progress)) {
	im.mu.Lock()
	defer im.mu.Unlock()
	fn(p)
}

// snapshot is a copy of p.
func (im *imports) snapshot(p *Progress) Progress {
	im.mu.Lock()
	defer im.mu.Unlock()
	return *p
}

// Imports returns the recent imports, newest first.
func (a *App) Imports() []Progress {
	a.imports.mu.Lock()
	defer a.imports.mu.Unlock()
	out := make([]Progress, len(a.imports.recent))
	for i, p := range a.imports.recent {
		out[i] = *p
	}
	return out
}

// ImportFollowed records how far the import that committed tx went:
// events published and data planes that applied it among the live ones.
func (a *App) ImportFollowed(tx uint64, published, applied, live int) {
	a.imports.mu.Lock()
	defer a.imports.mu.Unlock()
	for _, p := range a.imports.recent {
		if p.Tx == tx {
			p.Published, p.Applied, p.Live = published, applied, live
		}
	}
}
