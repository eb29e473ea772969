// Package status serves a data plane's operational endpoints: /health,
// /status (JSON), /status/ready, /status/config (content) and /metrics.
package status

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Status is the body of GET /status.
type Status struct {
	NodeID            string   `json:"node_id"`
	Mode              string   `json:"mode"`
	Version           uint64   `json:"version"`
	Hash              string   `json:"hash"`
	LastSync          string   `json:"last_sync"` // RFC 3339, "" before the first sync
	RecordsConsumed   uint64   `json:"records_consumed"`
	BytesConsumed     uint64   `json:"bytes_consumed"`
	DuplicatesSkipped uint64   `json:"duplicates_skipped"`
	BatchesApplied    uint64   `json:"batches_applied"`
	Resyncs           uint64   `json:"resyncs"`
	Stale             bool     `json:"stale"`
	Entities          int      `json:"entities"`
	Ready             bool     `json:"ready"`
	Lag               int64    `json:"lag"`
	Offset            int64    `json:"offset"`
	CommittedOffset   int64    `json:"committed_offset"`
	LastContact       string   `json:"last_contact"`
	BadRecords        uint64   `json:"bad_records"`
	HashMismatches    uint64   `json:"hash_mismatches"`
	Gaps              uint64   `json:"gaps"`
	LastResyncReason  string   `json:"last_resync_reason"`
	Quarantined       uint64   `json:"quarantined"`      // records written to the DLQ topic
	PanicsRecovered   uint64   `json:"panics_recovered"` // panics recovered while handling records
	PoisonBatches     uint64   `json:"poison_batches"`   // batches quarantined after repeated failures
	Degraded          bool     `json:"degraded"`         // content skipped, or a recreated empty topic (see errors); still serving
	Errors            []string `json:"errors"`
}

// FormatTime renders a time for Status ("" for the zero time).
func FormatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// Handler serves the endpoints. report is called per request; ready
// decides /status/ready. wait blocks until a version is live (or the
// context ends): GET /status?wait_version=N[&timeout=10s] answers once
// version N is applied, or at the timeout (at most a minute) with whatever
// is live then, so a client can time propagation without polling.
// content renders GET /status/config: every entity the node serves with
// its wire.ContentDigest, and the version and hash of that configuration,
// all taken from one snapshot.
// extra adds endpoints of other packages (GET /status/upstreams: Upstreams).
func Handler(report func() Status, wait func(context.Context, uint64) bool, content func() wire.ContentView, reg *prometheus.Registry, extra ...Route) http.Handler {
	mux := http.NewServeMux()
	for _, r := range extra {
		mux.Handle(r.Pattern, r.Handler)
	}
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		if q := r.URL.Query().Get("wait_version"); q != "" {
			v, err := strconv.ParseUint(q, 10, 64)
			timeout := 10 * time.Second
			if t := r.URL.Query().Get("timeout"); t != "" && err == nil {
				timeout, err = time.ParseDuration(t)
			}
			if err != nil || timeout <= 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"message": "wait_version wants a version number and timeout a duration like 5s"})
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), min(timeout, time.Minute))
			wait(ctx, v)
			cancel()
		}
		writeJSON(w, http.StatusOK, report())
	})
	mux.HandleFunc("GET /status/ready", func(w http.ResponseWriter, _ *http.Request) {
		s := report()
		if !s.Ready {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "message": "no complete configuration applied yet"})
			return
		}
		// A degraded node (content skipped, see /status) still serves its
		// last good configuration: it stays ready, and says so.
		writeJSON(w, http.StatusOK, map[string]any{"ready": true, "version": s.Version, "degraded": s.Degraded})
	})
	mux.HandleFunc("GET /status/config", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, content())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// Route is an endpoint added to Handler's.
type Route struct {
	Pattern string // http.ServeMux pattern
	Handler http.Handler
}

// Upstreams is GET /status/upstreams: this data plane's view of the
// health of its upstreams' targets, {"data": view()} (internal/health).
func Upstreams(view func() any) Route {
	return Route{Pattern: "GET /status/upstreams", Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"data": view()})
	})}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Register exposes the status figures as Prometheus metrics.
func Register(reg *prometheus.Registry, report func() Status) {
	gauge := func(name, help string, f func(Status) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "deltaplane", Subsystem: "dataplane", Name: name, Help: help},
			func() float64 { return f(report()) }))
	}
	counter := func(name, help string, f func(Status) float64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "deltaplane", Subsystem: "dataplane", Name: name, Help: help},
			func() float64 { return f(report()) }))
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	gauge("config_version", "Applied configuration version.", func(s Status) float64 { return float64(s.Version) })
	gauge("entities", "Entities in the applied configuration.", func(s Status) float64 { return float64(s.Entities) })
	gauge("lag_records", "Records between the applied offset and the high-water mark.", func(s Status) float64 { return float64(s.Lag) })
	gauge("ready", "1 once a complete configuration is applied.", func(s Status) float64 { return b(s.Ready) })
	gauge("degraded", "1 while degraded: a poison batch was skipped, or the recreated topic holds no complete configuration (the node serves on; see /status errors).", func(s Status) float64 { return b(s.Degraded) })
	gauge("stale", "1 when Kafka has not answered for 3 heartbeat intervals.", func(s Status) float64 { return b(s.Stale) })
	counter("records_consumed_total", "dp.deltas records fetched.", func(s Status) float64 { return float64(s.RecordsConsumed) })
	counter("bytes_consumed_total", "Bytes of the records fetched (keys, values, headers).", func(s Status) float64 { return float64(s.BytesConsumed) })
	counter("duplicates_skipped_total", "Records of already applied versions.", func(s Status) float64 { return float64(s.DuplicatesSkipped) })
	counter("batches_applied_total", "Batches applied.", func(s Status) float64 { return float64(s.BatchesApplied) })
	counter("resyncs_total", "Full rebuilds from the compacted topic.", func(s Status) float64 { return float64(s.Resyncs) })
	counter("bad_records_total", "Records with malformed headers.", func(s Status) float64 { return float64(s.BadRecords) })
	counter("hash_mismatches_total", "Content hash mismatches.", func(s Status) float64 { return float64(s.HashMismatches) })
	counter("panics_recovered_total", "Panics recovered while handling records.", func(s Status) float64 { return float64(s.PanicsRecovered) })
	counter("poison_batches_total", "Batches quarantined after repeated failed attempts.", func(s Status) float64 { return float64(s.PoisonBatches) })
	counter("gaps_total", "Version gaps detected.", func(s Status) float64 { return float64(s.Gaps) })
}
