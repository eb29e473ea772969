package main

import (
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

func writeReport(cfg config, res *results, dir string) error {
	j, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), j, 0o644); err != nil {
		return err
	}
	var plots []string
	for _, p := range []struct {
		file string
		draw func(*results) (*plot.Plot, error)
	}{
		{"propagation.png", plotPropagation},
		{"bytes_per_change.png", plotBytes},
		{"bootstrap.png", plotBootstrap},
		{"proxy_latency.png", plotProxy},
	} {
		// A plot that cannot be drawn (gonum panics on some degenerate
		// ranges) is left out; the tables hold the figures.
		err := func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("%v", r)
				}
			}()
			pl, err := p.draw(res)
			if err != nil || pl == nil {
				return err
			}
			if err := pl.Save(16*vg.Centimeter, 10*vg.Centimeter, filepath.Join(dir, p.file)); err != nil {
				return err
			}
			plots = append(plots, p.file)
			return nil
		}()
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: plot %s left out: %v\n", p.file, err)
		}
	}
	return os.WriteFile(filepath.Join(dir, "RESULTS.md"), []byte(markdown(res, plots)), 0o644)
}

func markdown(res *results, plots []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# deltaplane benchmark: incremental versus full sync\n\n")
	fmt.Fprintf(&b, "Measured %s on %s.\n\n", res.Started.Format("2006-01-02 15:04 UTC"), res.Machine)
	fmt.Fprintf(&b, "Command: `%s` (through `make bench`). %d entities, %d data planes, %d single-entity changes at %.0f/s, proxy runs of %s with %d clients, churn %.0f changes/s.\n\n",
		res.Config.Command, res.Config.Entities, res.Config.Dataplanes, res.Config.Changes, res.Config.Rate,
		res.Config.ProxyDuration, res.Config.Concurrency, res.Config.ChurnRate)
	fmt.Fprintf(&b, "Every figure is a median or a percentile of one run; both modes ran in the same invocation on the same broker, so the ratios are side by side. Wall time of the run: %s.\n\n", fmtDuration(res.Seconds))
	fmt.Fprintf(&b, "## Targets (issue 10)\n\n%s\n", targetsTable(res))
	fmt.Fprintf(&b, "## Incremental versus full\n\n")

	mode := func(name string) *modeResult {
		for i := range res.Modes {
			if res.Modes[i].Mode == name {
				return &res.Modes[i]
			}
		}
		return nil
	}
	inc, full := mode("incremental"), mode("full")
	row := func(label string, f func(*modeResult) float64, unit string, ratio bool) {
		cell := func(m *modeResult) string {
			if m == nil {
				return "—"
			}
			return fmtNum(f(m)) + unit
		}
		r := ""
		if ratio && inc != nil && full != nil && f(inc) > 0 {
			r = fmtNum(f(full)/f(inc)) + "×"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", label, cell(inc), cell(full), r)
	}
	fmt.Fprintf(&b, "| per change, per data plane | incremental | full | full ÷ incremental |\n|---|---|---|---|\n")
	row("bytes fetched (median)", func(m *modeResult) float64 { return m.BytesPerChange }, " B", true)
	row("records fetched (median)", func(m *modeResult) float64 { return m.RecordsPerChange }, "", true)
	row("propagation p50, 2xx → applied on every DP", func(m *modeResult) float64 { return m.Propagation.P50 }, " ms", true)
	row("propagation p95", func(m *modeResult) float64 { return m.Propagation.P95 }, " ms", true)
	row("propagation p99", func(m *modeResult) float64 { return m.Propagation.P99 }, " ms", true)
	row("data-plane CPU time", func(m *modeResult) float64 { return m.CPUPerChangeMs }, " ms", true)
	row("data-plane allocations", func(m *modeResult) float64 { return m.AllocPerChange / 1024 }, " KiB", true)
	row("data-plane peak RSS during the changes", func(m *modeResult) float64 { return float64(m.PeakRSS) / (1 << 20) }, " MiB", true)
	row("data-plane peak RSS before them (import included)", func(m *modeResult) float64 { return float64(m.LifePeakRSS) / (1 << 20) }, " MiB", true)
	row("changes measured", func(m *modeResult) float64 { return float64(m.Changes) }, "", false)
	row("configuration size, GET /config", func(m *modeResult) float64 { return float64(m.ConfigBytes) / (1 << 20) }, " MiB", false)
	row("data-plane RSS after the changes (largest)", func(m *modeResult) float64 { return float64(m.RSSMax) / (1 << 20) }, " MiB", true)
	row("data-plane RSS ÷ configuration size", func(m *modeResult) float64 { return float64(m.RSSMax) / float64(max(1, m.ConfigBytes)) }, "×", false)
	fmt.Fprintf(&b, "\n| proxy latency (ms) | incremental | full | full ÷ incremental |\n|---|---|---|---|\n")
	row("upstream called directly, p50", func(m *modeResult) float64 { return m.ProxyDirect.P50 }, "", false)
	row("upstream called directly, p99", func(m *modeResult) float64 { return m.ProxyDirect.P99 }, "", false)
	row("through a data plane, idle, p50", func(m *modeResult) float64 { return m.ProxyIdle.P50 }, "", true)
	row("through a data plane, idle, p99", func(m *modeResult) float64 { return m.ProxyIdle.P99 }, "", true)
	row("under config churn, p50", func(m *modeResult) float64 { return m.ProxyChurn.P50 }, "", true)
	row("under config churn, p99", func(m *modeResult) float64 { return m.ProxyChurn.P99 }, "", true)
	row("p99 churn ÷ p99 idle", func(m *modeResult) float64 { return m.ProxyChurn.P99 / m.ProxyIdle.P99 }, "×", false)
	row("churn changes made", func(m *modeResult) float64 { return float64(m.ChurnDone) }, "", false)

	fmt.Fprintf(&b, "\n| bootstrap of a new data plane (start to ready) | configuration (GET /config) | incremental | full |\n|---|---|---|---|\n")
	sizes := map[int]bool{}
	for _, m := range res.Modes {
		for _, br := range m.Bootstrap {
			sizes[br.Entities] = true
		}
	}
	keys := make([]int, 0, len(sizes))
	for k := range sizes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	boot := func(m *modeResult, n int) string {
		br := m.boot(n)
		switch {
		case br == nil:
			return "—"
		case br.Error != "":
			return "did not complete: " + br.Error
		}
		return fmt.Sprintf("%s s, peak RSS %s (%s), RSS once ready %s", fmtNum(br.Seconds), mib(br.PeakRSS),
			times(float64(br.PeakRSS)/float64(max(1, br.ConfigBytes))), mib(br.SteadyRSS))
	}
	cfgSize := func(n int) string {
		for _, m := range res.Modes {
			if br := m.boot(n); br != nil && br.ConfigBytes > 0 {
				if br.ConfigDerived {
					return "≈ " + mibInt(br.ConfigBytes) + " (derived: bytes per entity of the largest export measured)"
				}
				return mibInt(br.ConfigBytes)
			}
		}
		return "—"
	}
	for _, n := range keys {
		fmt.Fprintf(&b, "| %d entities | %s | %s | %s |\n", n, cfgSize(n), boot(inc, n), boot(full, n))
	}
	fmt.Fprintf(&b, "\n| bulk: POST /config while a data plane runs | mode | body | 2xx after | entity changes | admin-api peak RSS | sync-gateway peak RSS | running DP applied after the 2xx | changes/s | running DP RSS then |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, n := range keys {
		for _, m := range res.Modes {
			br := m.boot(n)
			if br == nil {
				continue
			}
			fmt.Fprintf(&b, "| %d entities | %s | %s | %s s | %d | %s | %s | %s s | %s | %s |\n", n, m.Mode, mibInt(br.Import.BodyBytes), fmtNum(br.Import.Seconds),
				br.Import.Changes, mib(br.AdminPeakRSS), mib(br.SyncPeakRSS), fmtNum(br.ApplySeconds), fmtNum(br.ChangesPerSec), mib(br.RunningRSS))
		}
	}
	for _, m := range res.Modes {
		lg := m.largest()
		if lg == nil {
			continue
		}
		fmt.Fprintf(&b, "\n| %s, a new data plane of %d entities | |\n|---|---|\n", m.Mode, lg.Entities)
		fmt.Fprintf(&b, "| restarted with the configuration in its store: to /status/ready | %s s |\n", fmtNum(lg.RestartSeconds))
		if l := lg.Propagation; l != nil {
			fmt.Fprintf(&b, "| propagation p50 / p95 / p99 (n=%d) | %s / %s / %s ms |\n", l.N, fmtNum(l.P50), fmtNum(l.P95), fmtNum(l.P99))
		}
		if lg.ProxyIdle != nil && lg.ProxyChurn != nil {
			fmt.Fprintf(&b, "| proxy p50 / p99 idle | %s / %s ms |\n", fmtNum(lg.ProxyIdle.P50), fmtNum(lg.ProxyIdle.P99))
			fmt.Fprintf(&b, "| proxy p50 / p99 under churn | %s / %s ms |\n", fmtNum(lg.ProxyChurn.P50), fmtNum(lg.ProxyChurn.P99))
			fmt.Fprintf(&b, "| p99 churn ÷ p99 idle | %s |\n", times(lg.ProxyChurn.P99/lg.ProxyIdle.P99))
		}
		for _, n := range lg.Notes {
			fmt.Fprintf(&b, "| note | %s |\n", n)
		}
	}
	for _, m := range res.Modes {
		if w := m.Writes; w != nil {
			fmt.Fprintf(&b, "\n%s mode, single-entity writes (PATCH of a route, one transaction each), %d clients closed-loop for %s s: **%s writes/s**, latency p50 %s ms, p99 %s ms, %d errors.\n",
				m.Mode, w.Clients, fmtNum(w.Seconds), fmtNum(w.PerSecond), fmtNum(w.Latency.P50), fmtNum(w.Latency.P99), w.Latency.Errors)
			if len(m.PGWaits) > 0 {
				fmt.Fprintf(&b, "Where the write transactions' Postgres backends were (pg_stat_activity of the cluster's database sampled every 10 ms, non-idle backends): %s.\n", pgWaitSummary(m.PGWaits, 8))
			}
		}
	}
	b.WriteString(wrkTable(res))
	b.WriteString(etcdTable(res, inc))
	b.WriteString(fleetTable(res))
	b.WriteString(heapSection(res))
	fmt.Fprintf(&b, "\n| fleet (%d data planes per mode) | incremental | full |\n|---|---|---|\n", res.Config.Dataplanes)
	row3 := func(label string, f func(*modeResult) string) {
		cell := func(m *modeResult) string {
			if m == nil {
				return "—"
			}
			return f(m)
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", label, cell(inc), cell(full))
	}
	row3("all data planes started (serially)", func(m *modeResult) string { return fmtNum(m.StartSeconds) + " s" })
	row3("all data planes converged on the loaded configuration", func(m *modeResult) string { return fmtNum(m.ConvergeSecs) + " s" })
	row3("data-plane RSS after the changes, largest / sum", func(m *modeResult) string {
		return fmtNum(float64(m.RSSMax)/(1<<20)) + " MiB / " + fmtNum(float64(m.RSSTotal)/(1<<20)) + " MiB"
	})
	row3("bytes fetched per change, all data planes (median × N)", func(m *modeResult) string {
		return fmtNum(m.BytesPerChange*float64(res.Config.Dataplanes)) + " B"
	})
	if res.Config.BrokerPID > 0 {
		row3("broker CPU, data planes idle ("+res.Config.IdleWindow.String()+")", func(m *modeResult) string { return fmtNum(100*m.BrokerIdleCPU) + " % of a core" })
		row3("broker CPU per change (whole change phase ÷ changes)", func(m *modeResult) string { return fmtNum(m.BrokerCPUPerChng) + " ms" })
	}

	fmt.Fprintf(&b, "\n## The floor\n\nRaw Kafka produce-to-consume latency of one record on the same broker: p50 %s ms, p99 %s ms (n=%d).\n",
		fmtNum(res.KafkaFloor.P50), fmtNum(res.KafkaFloor.P99), res.KafkaFloor.N)
	for _, m := range res.Modes {
		if res.KafkaFloor.P50 > 0 {
			fmt.Fprintf(&b, "- %s: end-to-end propagation p50 is %s× the floor.\n", m.Mode, fmtNum(m.Propagation.P50/res.KafkaFloor.P50))
		}
	}
	for _, m := range res.Modes {
		if len(m.Notes) > 0 || m.ChangeErrors > 0 {
			fmt.Fprintf(&b, "\n%s mode: %d changes failed and were not measured. Notes:\n", m.Mode, m.ChangeErrors)
			for _, n := range m.Notes {
				fmt.Fprintf(&b, "- %s\n", n)
			}
		}
	}
	if len(plots) > 0 {
		fmt.Fprintf(&b, "\n## Plots\n\n")
		for _, p := range plots {
			fmt.Fprintf(&b, "![%s](%s)\n\n", strings.TrimSuffix(p, ".png"), p)
		}
	}
	return b.String()
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "n/a"
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func plotPropagation(res *results) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Propagation latency: admin-api 2xx to applied on every data plane"
	p.X.Label.Text = "milliseconds (log scale)"
	p.Y.Label.Text = "fraction of changes"
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	var args []any
	for _, m := range res.Modes {
		s := slices.Clone(m.propagationSamples)
		if len(s) == 0 {
			continue
		}
		slices.Sort(s)
		pts := make(plotter.XYs, len(s))
		for i, v := range s {
			pts[i] = plotter.XY{X: v, Y: float64(i+1) / float64(len(s))}
		}
		args = append(args, m.Mode, pts)
	}
	if len(args) == 0 {
		return nil, nil
	}
	if err := plotutil.AddLines(p, args...); err != nil {
		return nil, err
	}
	logRange(&p.X.Min, &p.X.Max)
	return p, nil
}

func plotBytes(res *results) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Bytes fetched per change per data plane"
	p.Y.Label.Text = "bytes"
	vals := plotter.Values{}
	var names []string
	var labels plotter.XYLabels
	for i, m := range res.Modes {
		vals = append(vals, m.BytesPerChange)
		names = append(names, m.Mode)
		labels.XYs = append(labels.XYs, plotter.XY{X: float64(i), Y: m.BytesPerChange})
		labels.Labels = append(labels.Labels, fmtNum(m.BytesPerChange)+" B")
	}
	if len(vals) == 0 {
		return nil, nil
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(40))
	if err != nil {
		return nil, err
	}
	bars.Color = color.RGBA{R: 60, G: 110, B: 180, A: 255}
	text, err := plotter.NewLabels(labels)
	if err != nil {
		return nil, err
	}
	p.Add(bars, text)
	p.NominalX(names...)
	return p, nil
}

func plotBootstrap(res *results) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "New data plane: start to ready"
	p.X.Label.Text = "entities (log scale)"
	p.Y.Label.Text = "seconds (log scale)"
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	var args []any
	for _, m := range res.Modes {
		var pts plotter.XYs
		for _, br := range m.Bootstrap {
			if br.Error == "" && br.Seconds > 0 {
				pts = append(pts, plotter.XY{X: float64(br.Entities), Y: br.Seconds})
			}
		}
		if len(pts) > 0 {
			args = append(args, m.Mode, pts)
		}
	}
	if len(args) == 0 {
		return nil, nil
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil, err
	}
	logRange(&p.X.Min, &p.X.Max)
	logRange(&p.Y.Min, &p.Y.Max)
	return p, nil
}

func plotProxy(res *results) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "Proxy latency p99 through a data plane"
	p.Y.Label.Text = "milliseconds"
	w := vg.Points(18)
	for i, m := range res.Modes {
		bars, err := plotter.NewBarChart(plotter.Values{m.ProxyIdle.P99, m.ProxyChurn.P99}, w)
		if err != nil {
			return nil, err
		}
		bars.Color = plotutil.Color(i)
		bars.Offset = vg.Length(i-len(res.Modes)/2) * w
		p.Add(bars)
		p.Legend.Add(m.Mode, bars)
	}
	if len(res.Modes) == 0 {
		return nil, nil
	}
	p.Legend.Top = true
	p.NominalX("idle", "under churn")
	return p, nil
}

// logRange widens an axis range to whole powers of ten around the data,
// positive, as a log scale needs.
func logRange(lo, hi *float64) {
	l, h := math.Max(*lo, 1e-3), math.Max(*hi, 1e-3)
	*lo = math.Pow(10, math.Floor(math.Log10(l)))
	*hi = math.Pow(10, math.Ceil(math.Log10(h)))
	if *hi <= *lo {
		*hi = *lo * 10
	}
}
