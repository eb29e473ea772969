package api

import (
	"context"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// GET /metrics: the outbox and what the cluster tracker knows of the data
// planes, read at scrape time (deployments/grafana's dashboard uses them).
var (
	mOutboxBacklog = prometheus.NewDesc("deltaplane_admin_outbox_backlog", "Outbox rows committed and not yet published to cp.changes.", nil, nil)
	mLastTx        = prometheus.NewDesc("deltaplane_admin_last_tx", "The last committed admin transaction.", nil, nil)
	mPublishedTx   = prometheus.NewDesc("deltaplane_admin_published_tx", "The last transaction the relay published.", nil, nil)
	mLatest        = prometheus.NewDesc("deltaplane_admin_latest_version", "The newest configuration version on dp.deltas.", nil, nil)
	mLive          = prometheus.NewDesc("deltaplane_admin_dataplanes_live", "Data planes with a heartbeat within CLUSTER_LIVE_TTL.", nil, nil)
	mBehind        = prometheus.NewDesc("deltaplane_admin_dataplane_versions_behind", "Versions a data plane has not applied yet.", []string{"node"}, nil)
	mSecsBehind    = prometheus.NewDesc("deltaplane_admin_dataplane_seconds_behind", "How long the first version a data plane has not applied has been waiting.", []string{"node"}, nil)
	mResyncs       = prometheus.NewDesc("deltaplane_admin_dataplane_resyncs", "Resyncs a data plane reported in its heartbeat.", []string{"node"}, nil)
)

type metrics struct{ a *API }

func (m metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mOutboxBacklog, mLastTx, mPublishedTx, mLatest, mLive, mBehind, mSecsBehind, mResyncs} {
		ch <- d
	}
}

func (m metrics) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if ob, err := m.a.app.OutboxStatus(ctx); err == nil {
		ch <- prometheus.MustNewConstMetric(mOutboxBacklog, prometheus.GaugeValue, float64(ob.Backlog))
		ch <- prometheus.MustNewConstMetric(mLastTx, prometheus.GaugeValue, float64(ob.LastTx))
		ch <- prometheus.MustNewConstMetric(mPublishedTx, prometheus.GaugeValue, float64(ob.PublishedTx))
	}
	if m.a.cluster == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(mLatest, prometheus.GaugeValue, float64(m.a.cluster.Latest().Version))
	live := 0
	for _, dp := range m.a.cluster.DataPlanes(m.a.now(), Version) {
		if dp.Live {
			live++
		}
		ch <- prometheus.MustNewConstMetric(mBehind, prometheus.GaugeValue, float64(dp.VersionsBehind), dp.ID)
		ch <- prometheus.MustNewConstMetric(mSecsBehind, prometheus.GaugeValue, dp.SecondsBehind, dp.ID)
		ch <- prometheus.MustNewConstMetric(mResyncs, prometheus.CounterValue, float64(dp.Resyncs), dp.ID)
	}
	ch <- prometheus.MustNewConstMetric(mLive, prometheus.GaugeValue, float64(live))
}

// metricsHandler serves the registry of a's metrics and the Go runtime's.
func (a *API) metricsHandler() echo.HandlerFunc {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), metrics{a})
	return echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
}
