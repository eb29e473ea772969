package main

import (
	"fmt"
	"slices"
	"strings"
)

// target is one row of issue 10's table: what is measured, the target,
// the figure and whether it is met ("" when not measured in this run).
type target struct {
	Measure  string `json:"measure"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Met      string `json:"met"`
}

func mib(b int64) string     { return fmtNum(float64(b)/(1<<20)) + " MiB" }
func mibInt(b int) string    { return mib(int64(b)) }
func times(v float64) string { return fmtNum(v) + "×" }
func yesNo(ok bool) string   { return map[bool]string{true: "yes", false: "**no**"}[ok] }
func notRun(m, t string) target {
	return target{Measure: m, Target: t, Measured: "not measured in this run", Met: "—"}
}

func (res *results) mode(name string) *modeResult {
	for i := range res.Modes {
		if res.Modes[i].Mode == name {
			return &res.Modes[i]
		}
	}
	return nil
}

func (m *modeResult) boot(n int) *bootstrapResult {
	if m == nil {
		return nil
	}
	for i := range m.Bootstrap {
		if m.Bootstrap[i].Entities == n {
			return &m.Bootstrap[i]
		}
	}
	return nil
}

// largest is the largest bootstrap size that measured restart,
// propagation and proxy latency.
func (m *modeResult) largest() *bootstrapResult {
	var out *bootstrapResult
	if m == nil {
		return nil
	}
	for i := range m.Bootstrap {
		if br := &m.Bootstrap[i]; br.RestartSeconds > 0 || br.Propagation != nil || br.Heap != nil {
			out = br
		}
	}
	return out
}

func (res *results) targets() []target {
	inc, full := res.mode("incremental"), res.mode("full")
	var ts []target
	add := func(t target) { ts = append(ts, t) }

	m, t := fmt.Sprintf("data-plane RSS, steady, %d entities", res.Config.Entities), "≤ 3× the configuration's size (GET /config)"
	if inc != nil && inc.ConfigBytes > 0 {
		r := float64(inc.RSSMax) / float64(inc.ConfigBytes)
		add(target{m, t, fmt.Sprintf("%s = %s of %s", mib(inc.RSSMax), times(r), mibInt(inc.ConfigBytes)), yesNo(r <= 3)})
	} else {
		add(notRun(m, t))
	}
	m, t = "data-plane peak RSS, incremental ÷ full, under churn", "≤ 0.5×"
	if inc != nil && full != nil && full.PeakRSS > 0 {
		r := float64(inc.PeakRSS) / float64(full.PeakRSS)
		add(target{m, t, fmt.Sprintf("%s (%s ÷ %s, peaks during the changes; before them, import included: %s ÷ %s)",
			times(r), mib(inc.PeakRSS), mib(full.PeakRSS), mib(inc.LifePeakRSS), mib(full.LifePeakRSS)), yesNo(r <= 0.5)})
	} else {
		add(notRun(m, t))
	}
	limits := map[int]float64{30000: 1, 100000: 3, 1000000: 30}
	sizes := []int{}
	if inc != nil {
		for _, br := range inc.Bootstrap {
			sizes = append(sizes, br.Entities)
		}
	}
	for _, n := range []int{30000, 100000, 1000000} {
		if !slices.Contains(sizes, n) {
			sizes = append(sizes, n)
		}
	}
	slices.Sort(sizes)
	for _, n := range sizes {
		lim, ok := limits[n]
		tt := "peak RSS ≤ 3× configuration size; never slower than full mode"
		if ok {
			tt = fmt.Sprintf("≤ %s s, %s", fmtNum(lim), tt)
		}
		m := fmt.Sprintf("new data plane ready, %d entities", n)
		br, fb := inc.boot(n), full.boot(n)
		switch {
		case br == nil:
			add(notRun(m, tt))
		case br.Error != "":
			add(target{m, tt, "did not complete: " + br.Error, "**no**"})
		default:
			r := float64(br.PeakRSS) / float64(max(1, br.ConfigBytes))
			approx := ""
			if br.ConfigDerived {
				approx = "≈ "
			}
			s := fmt.Sprintf("%s s, peak RSS %s = %s%s of %s%s", fmtNum(br.Seconds), mib(br.PeakRSS), approx, times(r), approx, mibInt(br.ConfigBytes))
			met := (!ok || br.Seconds <= lim) && r <= 3
			if fb != nil && fb.Error == "" && fb.Seconds > 0 {
				s += fmt.Sprintf("; full mode %s s", fmtNum(fb.Seconds))
				met = met && br.Seconds <= fb.Seconds
			} else if fb != nil {
				s += "; full mode did not complete"
			}
			add(target{m, tt, s, yesNo(met)})
		}
	}
	lg := inc.largest()
	m, t = "data plane restarted with the largest configuration in its store", "serving within 5 s"
	if lg != nil && lg.RestartSeconds > 0 {
		add(target{m + fmt.Sprintf(" (%d entities)", lg.Entities), t, fmtNum(lg.RestartSeconds) + " s to /status/ready", yesNo(lg.RestartSeconds <= 5)})
	} else {
		add(notRun(m, t))
	}
	m, t = "propagation p99 with the largest configuration", "≤ 20 ms"
	if lg != nil && lg.Propagation != nil {
		add(target{m + fmt.Sprintf(" (%d entities)", lg.Entities), t, fmt.Sprintf("p99 %s ms (p50 %s ms, n=%d)", fmtNum(lg.Propagation.P99), fmtNum(lg.Propagation.P50), lg.Propagation.N), yesNo(lg.Propagation.P99 <= 20)})
	} else {
		add(notRun(m, t))
	}
	m, t = "single-entity Admin API writes", "≥ 2,000/s, commit order still guaranteed"
	if inc != nil && inc.Writes != nil {
		w := inc.Writes
		add(target{m + fmt.Sprintf(", %d clients", w.Clients), t, fmt.Sprintf("%s/s (p50 %s ms, p99 %s ms, %d errors)", fmtNum(w.PerSecond), fmtNum(w.Latency.P50), fmtNum(w.Latency.P99), w.Latency.Errors), yesNo(w.PerSecond >= 2000)})
	} else {
		add(notRun(m, t))
	}
	m, t = "bulk: POST /config of the largest configuration", "accepted with bounded memory in admin-api; ≥ 10,000 entity changes/s applied on every data plane"
	if inc != nil && len(inc.Bootstrap) > 0 {
		br := inc.Bootstrap[len(inc.Bootstrap)-1]
		for _, b := range inc.Bootstrap {
			if b.Entities > br.Entities {
				br = b
			}
		}
		s := fmt.Sprintf("%d entities, %s body: 2xx in %s s, admin-api peak RSS %s (%s the body); running data plane applied %d entity changes in %s s = %s/s",
			br.Entities, mibInt(br.Import.BodyBytes), fmtNum(br.Import.Seconds), mib(br.AdminPeakRSS), times(float64(br.AdminPeakRSS)/float64(max(1, br.Import.BodyBytes))),
			br.Import.Changes, fmtNum(br.ApplySeconds), fmtNum(br.ChangesPerSec))
		if fb := full.boot(br.Entities); fb != nil && fb.ChangesPerSec > 0 {
			s += fmt.Sprintf(" (full mode %s/s)", fmtNum(fb.ChangesPerSec))
		}
		if br.Error != "" && br.ApplySeconds == 0 {
			s += "; " + br.Error
		}
		add(target{m, t, s, yesNo(br.ChangesPerSec >= 10000) + " (memory: see the figure)"})
	} else {
		add(notRun(m, t))
	}
	m, t = "fleet: data-plane processes", "every change applied on all, p99 ≤ 200 ms (100 data planes, 10k entities)"
	if f := res.Fleet; f != nil && f.Dataplanes > 0 && f.Changes > 0 {
		add(target{fmt.Sprintf("fleet: %d data-plane processes, %d entities", f.Dataplanes, f.Entities), t,
			fmt.Sprintf("p99 %s ms (p50 %s ms), %d changes applied on all", fmtNum(f.Propagation.P99), fmtNum(f.Propagation.P50), f.Changes), yesNo(f.Propagation.P99 <= 200)})
	} else if f != nil && f.Error != "" {
		add(target{m, t, "did not complete: " + f.Error, "**no**"})
	} else {
		add(notRun(m, t))
	}
	m, t = "proxy p99 under churn ÷ idle", "≤ 1.1×"
	if inc != nil && inc.ProxyIdle.P99 > 0 {
		r := inc.ProxyChurn.P99 / inc.ProxyIdle.P99
		add(target{m + fmt.Sprintf(", %d entities", res.Config.Entities), t, fmt.Sprintf("%s (%s ÷ %s ms)", times(r), fmtNum(inc.ProxyChurn.P99), fmtNum(inc.ProxyIdle.P99)), yesNo(r <= 1.1)})
	} else {
		add(notRun(m, t))
	}
	if lg != nil && lg.ProxyIdle != nil && lg.ProxyIdle.P99 > 0 {
		r := lg.ProxyChurn.P99 / lg.ProxyIdle.P99
		add(target{m + fmt.Sprintf(", %d entities", lg.Entities), t, fmt.Sprintf("%s (%s ÷ %s ms)", times(r), fmtNum(lg.ProxyChurn.P99), fmtNum(lg.ProxyIdle.P99)), yesNo(r <= 1.1)})
	} else {
		add(notRun(m+", largest configuration", t))
	}
	wrk := func(name string) *wrkResult {
		for _, m := range res.Modes {
			for i := range m.Wrk {
				if m.Wrk[i].Target == name && m.Wrk[i].Error == "" {
					return &m.Wrk[i]
				}
			}
		}
		return nil
	}
	bare, dp, auth := wrk(tBare), wrk(tDP), wrk(tDPAuth)
	m, t = "proxy throughput, one route, no plugins (wrk, 16 connections)", "≥ 0.9× the bare Go reverse proxy's req/s, p50 within 1.2×"
	if bare != nil && dp != nil {
		rq, rp := dp.PerSecond/bare.PerSecond, dp.P50/bare.P50
		add(target{m, t, fmt.Sprintf("%s req/s = %s; p50 %s ms = %s (bare: %s req/s, p50 %s ms)", fmtNum(dp.PerSecond), times(rq), fmtNum(dp.P50), times(rp), fmtNum(bare.PerSecond), fmtNum(bare.P50)), yesNo(rq >= 0.9 && rp <= 1.2)})
	} else {
		add(notRun(m, t))
	}
	m, t = "proxy throughput, key-auth + rate-limiting on the route", "≥ 0.75× the bare Go reverse proxy's req/s"
	if bare != nil && auth != nil {
		rq := auth.PerSecond / bare.PerSecond
		add(target{m, t, fmt.Sprintf("%s req/s = %s (p50 %s ms)", fmtNum(auth.PerSecond), times(rq), fmtNum(auth.P50)), yesNo(rq >= 0.75)})
	} else {
		add(notRun(m, t))
	}
	return ts
}

func targetsTable(res *results) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| measure | target | measured | met? |\n|---|---|---|---|\n")
	for _, t := range res.targets() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Measure, t.Target, t.Measured, t.Met)
	}
	return b.String()
}
