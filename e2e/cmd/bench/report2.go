package main

import (
	"fmt"
	"strings"
	"time"
)

func fmtDuration(secs float64) string {
	return time.Duration(secs * float64(time.Second)).Round(time.Second).String()
}

func wrkTable(res *results) string {
	var rows []wrkResult
	for _, m := range res.Modes {
		rows = append(rows, m.Wrk...)
	}
	if len(rows) == 0 {
		return ""
	}
	find := func(t string) *wrkResult {
		for i := range rows {
			if rows[i].Target == t && rows[i].Error == "" {
				return &rows[i]
			}
		}
		return nil
	}
	bare, nginx := find(tBare), find(tNginx)
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Proxy throughput beside a bare Go reverse proxy and nginx\n\n")
	fmt.Fprintf(&b, "wrk, 2 threads, 16 connections, %s per target, one after another, all against the same upstream (a Go HTTP server in the bench process answering `{\"ok\":true}`); nginx is Debian's with 2 workers and keep-alive to the upstream. The data plane holds the %d-entity configuration.\n\n", res.Config.WrkDuration, res.Config.Entities)
	fmt.Fprintf(&b, "| target | req/s | p50 ms | p99 ms | req/s ÷ bare Go | p50 ÷ bare Go | req/s ÷ nginx | p50 ÷ nginx |\n|---|---|---|---|---|---|---|---|\n")
	ratio := func(a, b float64) string {
		if b <= 0 {
			return "—"
		}
		return times(a / b)
	}
	for _, r := range rows {
		if r.Error != "" {
			fmt.Fprintf(&b, "| %s | not measured: %s | | | | | | |\n", r.Target, r.Error)
			continue
		}
		rb, pb, rn, pn := "—", "—", "—", "—"
		if bare != nil {
			rb, pb = ratio(r.PerSecond, bare.PerSecond), ratio(r.P50, bare.P50)
		}
		if nginx != nil {
			rn, pn = ratio(r.PerSecond, nginx.PerSecond), ratio(r.P50, nginx.P50)
		}
		extra := ""
		if r.Non2xx > 0 {
			extra = fmt.Sprintf(" (%d non-2xx)", r.Non2xx)
		}
		fmt.Fprintf(&b, "| %s | %s%s | %s | %s | %s | %s | %s | %s |\n", r.Target, fmtNum(r.PerSecond), extra, fmtNum(r.P50), fmtNum(r.P99), rb, pb, rn, pn)
	}
	return b.String()
}

func etcdTable(res *results, inc *modeResult) string {
	e := res.Etcd
	if e == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Peer: etcd (what APISIX distributes configuration with)\n\n")
	if e.Error != "" {
		fmt.Fprintf(&b, "Not completed: %s\n", e.Error)
	}
	fmt.Fprintf(&b, "etcd %s (Debian's etcd-server) on loopback, one member; the same %d-entity configuration as %d keys under one prefix (%s of values, loaded in %s s in transactions of 128 puts); one put per change, %d changes at %.0f/s, %d watchers of the prefix; spoken to through etcd's JSON gateway (`/v3/kv`, `/v3/watch`), as APISIX's lua-resty-etcd does. Bytes are counted on the wire between etcd and each watcher (a counting TCP relay).\n\n",
		e.Version, res.Config.Entities, e.Keys, mibInt(e.ValueBytes), fmtNum(e.LoadSeconds), e.Changes, res.Config.Rate, e.Watchers)
	fmt.Fprintf(&b, "| | etcd | deltaplane incremental | deltaplane ÷ etcd |\n|---|---|---|---|\n")
	r := func(a, b float64) string {
		if b <= 0 {
			return "—"
		}
		return times(a / b)
	}
	var ip50, ip99, ibytes, iboot, ibootRSS, icfg float64
	if inc != nil {
		ip50, ip99, ibytes = inc.Propagation.P50, inc.Propagation.P99, inc.BytesPerChange
		icfg = float64(inc.ConfigBytes)
		if br := inc.boot(res.Config.Entities); br != nil {
			iboot, ibootRSS = br.Seconds, float64(br.PeakRSS)
		}
	}
	fmt.Fprintf(&b, "| bytes per change per watcher / data plane | %s B | %s B | %s |\n", fmtNum(e.BytesPerChange), fmtNum(ibytes), r(ibytes, e.BytesPerChange))
	fmt.Fprintf(&b, "| change to seen by every watcher / applied on every data plane, p50 | %s ms | %s ms | %s |\n", fmtNum(e.Propagation.P50), fmtNum(ip50), r(ip50, e.Propagation.P50))
	fmt.Fprintf(&b, "| p99 | %s ms | %s ms | %s |\n", fmtNum(e.Propagation.P99), fmtNum(ip99), r(ip99, e.Propagation.P99))
	fmt.Fprintf(&b, "| a new watcher's range read of the prefix / a new data plane's bootstrap, time | %s s | %s s | %s |\n", fmtNum(e.RangeSeconds), fmtNum(iboot), r(iboot, e.RangeSeconds))
	fmt.Fprintf(&b, "| its peak RSS (a Go process reading and decoding the range / the data plane) | %s | %s | %s |\n", mib(e.RangePeakRSS), mib(int64(ibootRSS)), r(ibootRSS, float64(e.RangePeakRSS)))
	fmt.Fprintf(&b, "| range response / GET /config | %s | %s | |\n", mibInt(e.RangeBytes), mibInt(int(icfg)))
	fmt.Fprintf(&b, "| server RSS holding the configuration (etcd / one data plane) | %s | %s | |\n", mib(e.ServerRSS), mib(func() int64 {
		if inc != nil {
			return inc.RSSMax
		}
		return 0
	}()))
	return b.String()
}

func fleetTable(res *results) string {
	f := res.Fleet
	if f == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Fleet\n\n")
	if f.Error != "" {
		fmt.Fprintf(&b, "Not completed: %s\n\n", f.Error)
	}
	if f.Dataplanes > 0 {
		fmt.Fprintf(&b, "%d data-plane processes (incremental) on the one broker, %d entities (GET /config %s), %d single-entity changes offered at %.0f/s, each waited for on every data plane.\n\n",
			f.Dataplanes, f.Entities, mibInt(f.ConfigBytes), f.Changes, res.Config.FleetRate)
		fmt.Fprintf(&b, "| %d data planes | |\n|---|---|\n", f.Dataplanes)
		fmt.Fprintf(&b, "| started one after another (to /health) | %s s |\n", fmtNum(f.StartSeconds))
		fmt.Fprintf(&b, "| converged on the loaded configuration | %s s |\n", fmtNum(f.ConvergeSecs))
		fmt.Fprintf(&b, "| propagation p50 / p95 / p99, 2xx → applied on all | %s / %s / %s ms |\n", fmtNum(f.Propagation.P50), fmtNum(f.Propagation.P95), fmtNum(f.Propagation.P99))
		fmt.Fprintf(&b, "| change phase, changes per second achieved | %s s, %s/s |\n", fmtNum(f.ChangeSeconds), fmtNum(float64(f.Changes)/max(f.ChangeSeconds, 1e-9)))
		fmt.Fprintf(&b, "| data-plane CPU per change, per data plane / all | %s ms / %s ms |\n", fmtNum(f.CPUPerChangeMs), fmtNum(f.CPUPerChangeMs*float64(f.Dataplanes)))
		fmt.Fprintf(&b, "| bytes per change per data plane (median) / all | %s B / %s B |\n", fmtNum(f.BytesPerChange), fmtNum(f.BytesPerChange*float64(f.Dataplanes)))
		fmt.Fprintf(&b, "| broker CPU, data planes idle / per change | %s %% of a core / %s ms |\n", fmtNum(100*f.BrokerIdleCPU), fmtNum(f.BrokerCPUPerCh))
		fmt.Fprintf(&b, "| data-plane CPU, converged and idle, per data plane | %s %% of a core |\n", fmtNum(100*f.IdleCPUPerDP))
		fmt.Fprintf(&b, "| data-plane RSS, largest / sum | %s / %s |\n", mib(f.RSSMax), mib(f.RSSTotal))
		for _, h := range f.Profiles {
			fmt.Fprintf(&b, "\nCPU profile, %s ([%s](%s))", h.Label, h.File, h.File)
			if h.Error != "" {
				fmt.Fprintf(&b, ": not taken: %s\n", h.Error)
				continue
			}
			fmt.Fprintf(&b, ":\n\n```\n%s\n```\n", h.Top)
		}
	}
	if f.Followers > 0 {
		fmt.Fprintf(&b, "\n%d lightweight followers: kafka-go readers of dp.deltas in the bench process (no group, from the end, MaxWait 500 ms as a data plane), the data-plane processes stopped; %d changes at %.0f/s, each waited for on every follower. Fetch latency is the admin-api's 2xx to the record returned by the follower's reader.\n\n",
			f.Followers, f.FollowerChanges, res.Config.FleetRate)
		fmt.Fprintf(&b, "| %d followers | |\n|---|---|\n", f.Followers)
		fmt.Fprintf(&b, "| fetch latency, every (follower, change), p50 / p95 / p99 | %s / %s / %s ms |\n", fmtNum(f.FollowerLatency.P50), fmtNum(f.FollowerLatency.P95), fmtNum(f.FollowerLatency.P99))
		fmt.Fprintf(&b, "| the last follower to read a change, p50 / p99 | %s / %s ms |\n", fmtNum(f.FollowerWorst.P50), fmtNum(f.FollowerWorst.P99))
		fmt.Fprintf(&b, "| broker CPU, followers idle (%s) | %s %% of a core |\n", res.Config.IdleWindow, fmtNum(100*f.FollowerBrokerIdle))
		fmt.Fprintf(&b, "| fetch requests per second, idle (all followers) | %s |\n", fmtNum(f.FollowerFetchesIdl))
		fmt.Fprintf(&b, "| broker CPU per change (change phase ÷ changes) | %s ms |\n", fmtNum(f.FollowerBrokerPerC))
		fmt.Fprintf(&b, "| record bytes delivered per change, all followers (key + value + headers) | %s B |\n", fmtNum(f.FollowerBytesPerCh))
	}
	return b.String()
}

func heapSection(res *results) string {
	var hs []*heapResult
	for _, m := range res.Modes {
		if m.Heap != nil {
			hs = append(hs, m.Heap)
		}
		for i := range m.Profiles {
			hs = append(hs, &m.Profiles[i])
		}
		for _, br := range m.Bootstrap {
			if br.Heap != nil {
				hs = append(hs, br.Heap)
			}
		}
	}
	if len(hs) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n## Data-plane profiles\n\nIn-use heap after a GC (`/debug/pprof/heap?gc=1` of a data plane built with a pprof listener overlaid, see heap.go), top by `go tool pprof -top -sample_index=inuse_space`; CPU profiles (`/debug/pprof/profile`) while wrk ran through the data plane, top by `go tool pprof -top`. The profiles are beside this file.\n")
	for _, h := range hs {
		fmt.Fprintf(&b, "\n%s ([%s](%s))", h.Label, h.File, h.File)
		if h.Error != "" {
			fmt.Fprintf(&b, ": not taken: %s\n", h.Error)
			continue
		}
		fmt.Fprintf(&b, ":\n\n```\n%s\n```\n", h.Top)
	}
	return b.String()
}
