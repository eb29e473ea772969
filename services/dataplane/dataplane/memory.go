package dataplane

import (
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
)

// gcHeadroom is how far the Go heap may grow past its live set between
// collections, whatever the configuration's size (see gcTuner).
const gcHeadroom = 16 << 20

// gcTuner sets GOGC after every published configuration so that the heap's
// headroom is about gcHeadroom rather than proportional to the live set.
// Go's default (GOGC=100) lets the heap reach twice the live set; a data
// plane's live set is mostly its configuration, which does not make the
// garbage that needs that room (requests and batches do, at rates that do
// not grow with the configuration), so the default holds a second
// configuration's worth of memory for nothing: 30 MiB at 30,000 entities,
// a gigabyte at a million. GOGC stays between 25 (a collection at most
// every quarter of the live set: the CPU bound at large configurations)
// and 100 (small configurations keep Go's default). Unlike a memory
// limit (GOMEMLIMIT), GOGC follows the live set through a resync, which
// may hold several configurations at once for a moment, without the
// collector running back to back.
//
// After a whole configuration is replaced (a resync, full mode) or a large
// batch (a bulk import: see large) it also
// returns the build's transient memory to the OS at once
// (debug.FreeOSMemory, off the consumer's goroutine) instead of leaving it
// to the background scavenger. A GOGC or GOMEMLIMIT in the environment
// turns the tuner off: the operator's setting stands.
type gcTuner struct {
	log      *slog.Logger
	headroom uint64
	mu       sync.Mutex
	percent  int
	freeing  atomic.Bool
}

func newGCTuner(log *slog.Logger, getenv func(string) string) *gcTuner {
	if getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		log.Info("GC settings from the environment", "GOGC", getenv("GOGC"), "GOMEMLIMIT", getenv("GOMEMLIMIT"))
		return nil
	}
	return &gcTuner{log: log, headroom: gcHeadroom, percent: 100}
}

// Notify is a consumer listener.
func (g *gcTuner) Notify(s *snapshot.Snapshot, events []snapshot.Event, reset bool) {
	if g == nil {
		return
	}
	if !reset && !large(len(events), s.Len()) {
		g.tune()
		return
	}
	if g.freeing.CompareAndSwap(false, true) {
		go func() {
			defer g.freeing.Store(false)
			debug.FreeOSMemory()
			g.tune()
		}()
	}
}

func (g *gcTuner) tune() {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	p := gcPercent(s[0].Value.Uint64(), g.headroom)
	g.mu.Lock()
	defer g.mu.Unlock()
	if p != g.percent {
		debug.SetGCPercent(p)
		g.percent = p
		g.log.Debug("GOGC set", "percent", p, "live_bytes", s[0].Value.Uint64())
	}
}

// gcPercent is the GOGC that gives a heap of live bytes about headroom
// bytes to grow, between 25 and 100, rounded down to a multiple of 5 (so
// small changes of the live set do not reset it).
func gcPercent(live, headroom uint64) int {
	if live == 0 {
		return 100
	}
	p := int(min(100*headroom/live, 100))
	return max(25, p-p%5)
}

// large: a batch of n changes to a configuration of size entities is
// worth returning its transient memory for (at least 1,000 changes and a
// tenth of the configuration).
func large(n, size int) bool { return n >= 1000 && n >= size/10 }
