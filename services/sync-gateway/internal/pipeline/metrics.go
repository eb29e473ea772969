package pipeline

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/deltaplane/deltaplane/shared/wire"
)

// Metrics are the sync-gateway's Prometheus series.
type Metrics struct {
	consumed    prometheus.Counter
	duplicates  prometheus.Counter
	quarantined *prometheus.CounterVec
	published   prometheus.Counter
	versions    prometheus.Counter
	snapshots   prometheus.Counter
	rebuilds    prometheus.Counter
	repairs     prometheus.Counter
	errors      prometheus.Counter
	version     prometheus.Gauge
	lastTx      prometheus.Gauge
	entities    prometheus.Gauge
	active      prometheus.Gauge
	// waitingForTx: the transaction the sequencer holds for (0: none).
	waitingForTx prometheus.Gauge
	// compacted: transactions passed over ("missing") or closed without
	// some events ("partial") because compaction removed their records.
	compacted   *prometheus.CounterVec
	publishSecs prometheus.Histogram
	// addedLatency: from the append of a transaction's last cp.changes
	// record (its timestamp) to dp.deltas acknowledging the batch.
	addedLatency prometheus.Histogram
}

// NewMetrics registers the series on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		consumed:     prometheus.NewCounter(prometheus.CounterOpts{Name: "deltaplane_sync_consumed_total", Help: "cp.changes records consumed."}),
		duplicates:   prometheus.NewCounter(prometheus.CounterOpts{Name: "deltaplane_sync_duplicates_total", Help: "cp.changes records skipped as duplicates of processed transactions."}),
		quarantined:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deltaplane_sync_quarantined_total", Help: "cp.changes records sent to the DLQ, by reason."}, []string{"reason"}),
		published:    prometheus.NewCounter(prometheus.CounterOpts{Name: "deltaplane_sync_published_records_total", Help: "Records published on dp.deltas (or dp.full chunks in full mode)."}),
		versions:     prometheus.NewCounter(prometheus.CounterOpts{Name: "deltaplane_sync_versions_total", Help: "Versions sequenced by this instance."}),
		snapshots:    prometheus.NewCounter(prometheus.CounterOpts{Name: "deltaplane_sync_snapshots_total", Help: "Full snapshots published (full mode)."}),
		rebuilds:     prometheus.NewCounter(prometheus.CounterOpts{Name: "deltaplane_sync_rebuilds_total", Help: "State rebuilds from the output topic."}),
		repairs:      prometheus.NewCounter(prometheus.CounterOpts{Name: "deltaplane_sync_repairs_total", Help: "Repair versions published (late writes left older records last on dp.deltas)."}),
		errors:       prometheus.NewCounter(prometheus.CounterOpts{Name: "deltaplane_sync_errors_total", Help: "Failed publish attempts (retried)."}),
		version:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "deltaplane_sync_version", Help: "Last complete configuration version."}),
		lastTx:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "deltaplane_sync_last_tx", Help: "Last admin transaction sequenced."}),
		entities:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "deltaplane_sync_entities", Help: "Entities in the configuration."}),
		active:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "deltaplane_sync_active", Help: "1 when this instance holds the cp.changes partition."}),
		waitingForTx: prometheus.NewGauge(prometheus.GaugeOpts{Name: "deltaplane_sync_waiting_for_tx", Help: "Transaction the sequencer holds for: a later one arrived first on contiguous cp.changes offsets (0: none)."}),
		compacted:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "deltaplane_sync_compacted_total", Help: "cp.changes transactions passed over (missing) or closed without some events (partial) because compaction removed their records."}, []string{"kind"}),
		publishSecs:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "deltaplane_sync_publish_seconds", Help: "Time to publish one batch and have it acknowledged.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		addedLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "deltaplane_sync_added_latency_seconds", Help: "From a transaction's last cp.changes record timestamp to dp.deltas acknowledging its batch.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
	}
	reg.MustRegister(m.addedLatency, m.consumed, m.duplicates, m.quarantined, m.published, m.versions, m.snapshots,
		m.rebuilds, m.repairs, m.errors, m.version, m.lastTx, m.entities, m.active, m.publishSecs, m.waitingForTx, m.compacted)
	// Every reason starts at zero, so dashboards and alerts see the series.
	for _, r := range []string{wire.ReasonDecode, wire.ReasonSchema, wire.ReasonType, wire.ReasonKey,
		wire.ReasonOp, wire.ReasonBatch, wire.ReasonEntity, wire.ReasonOversized} {
		m.quarantined.WithLabelValues(r)
	}
	m.compacted.WithLabelValues("missing")
	m.compacted.WithLabelValues("partial")
	return m
}
