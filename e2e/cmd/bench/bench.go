package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/deltaplane/deltaplane/e2e/cluster"
)

// results is everything one invocation measured.
type results struct {
	Started    time.Time    `json:"started"`
	Machine    string       `json:"machine"`
	Config     config       `json:"config"`
	KafkaFloor latency      `json:"kafka_floor_ms"`
	Modes      []modeResult `json:"modes"`
	Etcd       *etcdResult  `json:"etcd,omitempty"`
	Fleet      *fleetResult `json:"fleet,omitempty"`
	Seconds    float64      `json:"wall_seconds"`
}

type modeResult struct {
	Mode         string  `json:"mode"`
	LoadEntities int     `json:"load_entities"`
	LoadBytes    int     `json:"load_bytes"`
	LoadSeconds  float64 `json:"load_seconds"`
	ConvergeSecs float64 `json:"converge_seconds"`
	StartSeconds float64 `json:"dp_start_seconds"`

	// Fleet figures: the data planes' resident memory after the changes,
	// and the broker's CPU (with -broker-pid).
	RSSMax           int64   `json:"dp_rss_bytes_max"`
	RSSTotal         int64   `json:"dp_rss_bytes_total"`
	BrokerIdleCPU    float64 `json:"broker_cpu_idle_fraction,omitempty"`
	BrokerCPUPerChng float64 `json:"broker_cpu_ms_per_change,omitempty"`

	Changes          int     `json:"changes"`
	ChangeErrors     int     `json:"change_errors"`
	BytesPerChange   float64 `json:"bytes_per_change_per_dp_median"`
	RecordsPerChange float64 `json:"records_per_change_per_dp_median"`
	Propagation      latency `json:"propagation_ms"`
	CPUPerChangeMs   float64 `json:"dp_cpu_ms_per_change"`
	AllocPerChange   float64 `json:"dp_alloc_bytes_per_change"`
	// PeakRSS is the data planes' largest peak RSS during the changes
	// (the high-water mark is reset when they start: the peak under
	// churn); LifePeakRSS their peak before that, the configuration's
	// import included.
	PeakRSS     int64 `json:"dp_peak_rss_bytes"`
	LifePeakRSS int64 `json:"dp_peak_rss_before_changes_bytes"`

	ProxyDirect latency `json:"proxy_direct_ms"`
	ProxyIdle   latency `json:"proxy_idle_ms"`
	ProxyChurn  latency `json:"proxy_churn_ms"`
	ChurnDone   int     `json:"churn_changes"`

	// ConfigBytes is the size of GET /config with the loaded
	// configuration; RSSMax above is the steady figure beside it.
	ConfigBytes int          `json:"config_bytes"`
	Writes      *writeResult `json:"writes,omitempty"`
	Wrk         []wrkResult  `json:"wrk,omitempty"`
	Heap        *heapResult  `json:"heap,omitempty"`
	Profiles    []heapResult `json:"profiles,omitempty"` // CPU profiles
	PGWaits     []pgWait     `json:"pg_waits,omitempty"` // during the write run

	Bootstrap []bootstrapResult `json:"bootstrap"`
	Notes     []string          `json:"notes,omitempty"`

	propagationSamples []float64
}

type bootstrapResult struct {
	Entities int     `json:"entities"`
	Seconds  float64 `json:"seconds"`
	PeakRSS  int64   `json:"peak_rss_bytes"`
	Error    string  `json:"error,omitempty"`

	ConfigBytes   int          `json:"config_bytes"`
	ConfigDerived bool         `json:"config_bytes_derived,omitempty"` // bytes per entity of the largest size measured × entities
	Import        importResult `json:"import"`
	// The admin-api's and sync-gateway's peak RSS so far (VmHWM), read
	// right after this import was applied.
	AdminPeakRSS int64 `json:"admin_peak_rss_bytes"`
	SyncPeakRSS  int64 `json:"sync_peak_rss_bytes"`
	// GET /config measured (not derived): its time and the admin-api's
	// peak RSS right after it.
	ExportSeconds      float64 `json:"export_seconds,omitempty"`
	AdminExportPeakRSS int64   `json:"admin_peak_rss_after_export_bytes,omitempty"`
	// The data plane already running: 2xx of the import to applied, and
	// the entity changes per second that makes.
	ApplySeconds  float64 `json:"running_dp_apply_seconds"`
	RunningRSS    int64   `json:"running_dp_rss_bytes"`
	ChangesPerSec float64 `json:"running_dp_changes_per_second"`
	// The new data plane once ready.
	SteadyRSS      int64       `json:"steady_rss_bytes"`
	RestartSeconds float64     `json:"restart_seconds,omitempty"`
	Propagation    *latency    `json:"propagation_ms,omitempty"`
	ProxyIdle      *latency    `json:"proxy_idle_ms,omitempty"`
	ProxyChurn     *latency    `json:"proxy_churn_ms,omitempty"`
	Heap           *heapResult `json:"heap,omitempty"`
	Notes          []string    `json:"notes,omitempty"`
}

type bench struct {
	cfg       config
	perEntity float64 // GET /config bytes per entity, largest size measured
	work      string
	log       io.Writer
	bin       string
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (b *bench) run(ctx context.Context) (*results, error) {
	res := &results{Started: time.Now().UTC(), Machine: machine(), Config: b.cfg}
	b.bin = b.work + "/bin"
	b.logf("building services")
	if err := cluster.Build(ctx, b.cfg.Repo, b.bin); err != nil {
		return nil, err
	}
	if b.cfg.Heap {
		if err := buildProfiledDataplane(ctx, b.cfg.Repo, b.bin, b.work); err != nil {
			return nil, err
		}
	}
	if b.cfg.BrokerPID > 0 {
		b.logf("broker pid %d", b.cfg.BrokerPID)
	}
	b.logf("kafka floor: produce-to-consume latency on the same broker")
	floor, err := kafkaFloor(ctx, b.cfg.Kafka, 200)
	if err != nil {
		return nil, fmt.Errorf("kafka floor: %w", err)
	}
	res.KafkaFloor = floor
	for _, mode := range b.cfg.Modes {
		mr, err := b.runMode(ctx, mode)
		if err != nil {
			return nil, fmt.Errorf("%s mode: %w", mode, err)
		}
		res.Modes = append(res.Modes, *mr)
	}
	if b.cfg.Etcd {
		b.logf("etcd: %d keys, %d watchers", b.cfg.Entities, b.cfg.EtcdWatchers)
		e := b.etcdPeer(ctx)
		res.Etcd = &e
		b.logf("etcd: put-to-watch p50 %.2fms p99 %.2fms, %.0f bytes per change per watcher, range read %.2fs %s", e.Propagation.P50, e.Propagation.P99, e.BytesPerChange, e.RangeSeconds, e.Error)
	}
	if b.cfg.Fleet > 0 || b.cfg.Followers > 0 {
		f := b.fleet(ctx)
		res.Fleet = &f
	}
	res.Seconds = time.Since(res.Started).Seconds()
	return res, nil
}

func (b *bench) runMode(ctx context.Context, mode string) (*modeResult, error) {
	mr := &modeResult{Mode: mode}
	name := fmt.Sprintf("bench-%s-%d", mode, time.Now().Unix()%1e6)
	work := b.work + "/" + mode
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	c, err := cluster.Start(ctx, cluster.Options{
		Name: name, Kafka: b.cfg.Kafka, PostgresAdmin: b.cfg.Postgres,
		BinDir: b.bin, WorkDir: work, SyncMode: mode, LogLevel: "warn",
		Env: []string{"ADMIN_MAX_BODY_BYTES=4294967296", "ADMIN_MAX_CONFIG_BYTES=4294967296"},
	})
	if c != nil {
		defer c.Close()
	}
	if err != nil {
		return nil, err
	}
	var dps []*cluster.Dataplane
	start := time.Now()
	var pprofAddr string
	for i := range b.cfg.Dataplanes {
		var env []string
		if i == 0 && b.cfg.Heap {
			if pprofAddr, err = freeAddr(); err != nil {
				return nil, err
			}
			env = append(env, pprofEnv(pprofAddr))
		}
		dp, err := c.StartDataplane(ctx, fmt.Sprintf("dp%d", i+1), env...)
		if err != nil {
			if dp != nil && dp.Process != nil {
				err = fmt.Errorf("%w; its log ends:\n%s", err, dp.LogTail(2000))
			}
			return nil, err
		}
		dps = append(dps, dp)
	}
	mr.StartSeconds = time.Since(start).Seconds()
	b.logf("%s: %d data planes started in %.1fs", mode, len(dps), mr.StartSeconds)

	b.logf("%s: loading %d entities through /config", mode, b.cfg.Entities)
	n, size, secs, err := loadConfig(ctx, c, b.cfg.Entities)
	if err != nil {
		return nil, err
	}
	mr.LoadEntities, mr.LoadBytes, mr.LoadSeconds = n, size, secs
	t0 := time.Now()
	if err := converge(ctx, c, dps, 10*time.Minute); err != nil {
		return nil, err
	}
	mr.ConvergeSecs = time.Since(t0).Seconds()
	b.logf("%s: %d data planes converged in %.1fs", mode, len(dps), mr.ConvergeSecs)
	if mr.ConfigBytes, err = configBytes(ctx, c); err != nil {
		return nil, err
	}
	if pid := b.cfg.BrokerPID; pid > 0 {
		// The broker serving every data plane's idle fetch and heartbeat.
		window := b.cfg.IdleWindow
		c0, err := procCPU(pid)
		if err != nil {
			return nil, fmt.Errorf("broker pid %d: %w", pid, err)
		}
		time.Sleep(window)
		c1, _ := procCPU(pid)
		mr.BrokerIdleCPU = float64(c1-c0) / float64(window)
		b.logf("%s: broker CPU with %d idle data planes: %.1f%% of one core", mode, len(dps), 100*mr.BrokerIdleCPU)
	}

	if err := b.changes(ctx, c, dps, mr); err != nil {
		return nil, err
	}
	b.logf("%s: propagation p50 %.1fms p99 %.1fms, %.0f bytes per change per data plane",
		mode, mr.Propagation.P50, mr.Propagation.P99, mr.BytesPerChange)
	for _, dp := range dps {
		rss := procRSS(dp.Pid())
		mr.RSSMax = max(mr.RSSMax, rss)
		mr.RSSTotal += rss
	}
	b.logf("%s: data-plane RSS max %d MiB, total %d MiB; GET /config %d bytes", mode, mr.RSSMax>>20, mr.RSSTotal>>20, mr.ConfigBytes)
	if len(dps) > 0 { // what the first data plane's RSS is made of
		dp, mib := dps[0], func(name string) float64 {
			v, _ := metric(ctx, dps[0].Status+"/metrics", name)
			return v / (1 << 20)
		}
		b.logf("%s: %s RSS anon %d MiB, file %d MiB; Go heap in use %.1f MiB, idle %.1f MiB (released %.1f), next GC at %.1f MiB, stacks %.1f MiB, runtime %.1f MiB",
			mode, dp.NodeID, procStatusBytes(dp.Pid(), "RssAnon:")>>20, procStatusBytes(dp.Pid(), "RssFile:")>>20,
			mib("go_memstats_heap_inuse_bytes"), mib("go_memstats_heap_idle_bytes"), mib("go_memstats_heap_released_bytes"),
			mib("go_memstats_next_gc_bytes"), mib("go_memstats_stack_sys_bytes"), mib("go_memstats_other_sys_bytes")+mib("go_memstats_mspan_sys_bytes")+mib("go_memstats_gc_sys_bytes"))
	}
	if b.cfg.Heap {
		h, err := b.heapProfile(ctx, pprofAddr, fmt.Sprintf("heap-%s-%d-running.pb.gz", mode, b.cfg.Entities))
		if err != nil {
			h.Error = err.Error()
		}
		h.Label = fmt.Sprintf("%s, %d entities, after the changes", mode, b.cfg.Entities)
		mr.Heap = &h
	}
	if b.cfg.BrokerPID > 0 {
		b.logf("%s: broker CPU %.1f ms per change", mode, mr.BrokerCPUPerChng)
	}

	if err := b.proxy(ctx, c, dps[0], mr); err != nil {
		return nil, err
	}
	b.logf("%s: proxy p99 idle %.2fms, under churn %.2fms", mode, mr.ProxyIdle.P99, mr.ProxyChurn.P99)

	if b.cfg.WriteDuration > 0 {
		sctx, stopSampling := context.WithCancel(ctx)
		waits := make(chan []pgWait, 1)
		go func() { waits <- samplePGWaits(sctx, c) }()
		w := b.writes(ctx, c, b.cfg.Writers, b.cfg.WriteDuration)
		stopSampling()
		mr.PGWaits = <-waits
		mr.Writes = &w
		b.logf("%s: %d clients, %.0f writes/s, p50 %.1fms p99 %.1fms, %d errors", mode, w.Clients, w.PerSecond, w.Latency.P50, w.Latency.P99, w.Latency.Errors)
		b.logf("%s: postgres backends during the writes: %s", mode, pgWaitSummary(mr.PGWaits, 8))
		if err := converge(ctx, c, dps, 10*time.Minute); err != nil {
			return nil, err
		}
	}
	if b.cfg.WrkDuration > 0 && mode == b.cfg.Modes[0] {
		w, err := b.proxyPeers(ctx, c, dps[0], pprofAddr, b.cfg.WrkDuration, mr)
		if err != nil {
			mr.Notes = append(mr.Notes, "proxy peers: "+err.Error())
		}
		mr.Wrk = w
	}

	// The first data plane keeps running through the bootstraps: it
	// applies each import as a running data plane does (bulk throughput).
	for _, dp := range dps[1:] {
		dp.Stop(syscall.SIGTERM)
	}
	largest := slices.Max(append([]int{0}, b.cfg.Bootstrap...))
	for _, size := range b.cfg.Bootstrap {
		large := size == largest && slices.Contains(b.cfg.LargeModes, mode)
		br := b.bootstrap(ctx, c, mode, dps[0], size, large)
		mr.Bootstrap = append(mr.Bootstrap, br)
		b.logf("%s: bootstrap of %d entities: %.2fs, peak RSS %d MiB, GET /config %d bytes; running DP applied %d changes in %.2fs %s", mode, size, br.Seconds, br.PeakRSS>>20, br.ConfigBytes, br.Import.Changes, br.ApplySeconds, br.Error)
	}
	dps[0].Stop(syscall.SIGTERM)
	return mr, nil
}

// bootstrap loads a configuration of n entities while running keeps
// running (timing how long it takes to apply the import), then starts a
// new data plane and times it from process start to ready on the current
// version. With large it then measures, on that new data plane: its heap,
// a restart with the configuration in its store, propagation of single
// changes and proxy latency idle and under churn.
func (b *bench) bootstrap(ctx context.Context, c *cluster.Cluster, mode string, running *cluster.Dataplane, n int, large bool) bootstrapResult {
	br := bootstrapResult{Entities: n}
	// One deadline for the size: import, sequencing, both data planes.
	deadline := time.Now().Add(b.cfg.BootTimeout)
	ictx, cancel := context.WithDeadline(ctx, deadline)
	imp, err := importConfig(ictx, c, n)
	cancel()
	br.Import = imp
	if err != nil {
		br.Error = err.Error()
		return br
	}
	// The import is one transaction, hence one version: wait until the
	// sync-gateway has sequenced it (it holds exactly the generated
	// entities) before timing a new data plane.
	want := max(10, n/10*10)
	var sg status
	for {
		var err error
		sg, err = getStatus(ctx, c.Sync+"/status")
		if err == nil && sg.Entities == want {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			br.Error = fmt.Sprintf("sync-gateway holds %d entities, want %d (%v)", sg.Entities, want, err)
			return br
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, at, err := waitVersion(ctx, running, sg.Version, max(time.Second, time.Until(deadline))); err != nil {
		br.Notes = append(br.Notes, "running data plane: "+err.Error())
	} else {
		br.ApplySeconds = at.Sub(imp.Done).Seconds()
		if br.ApplySeconds > 0 {
			br.ChangesPerSec = float64(imp.Changes) / br.ApplySeconds
		}
	}
	br.AdminPeakRSS, br.SyncPeakRSS = procPeakRSS(c.AdminProc.Pid()), procPeakRSS(c.SyncProc.Pid())
	br.RunningRSS = procRSS(running.Pid())
	if large {
		// Its memory and CPU are not needed for what follows.
		running.Stop(syscall.SIGTERM)
	}
	if n > b.cfg.ExportMax && b.perEntity > 0 {
		br.ConfigBytes = int(b.perEntity * float64(want))
		br.ConfigDerived = true
	} else {
		t0 := time.Now()
		if br.ConfigBytes, err = configBytes(ctx, c); err != nil {
			br.Notes = append(br.Notes, "GET /config: "+err.Error())
		} else {
			br.ExportSeconds = time.Since(t0).Seconds()
			br.AdminExportPeakRSS = procPeakRSS(c.AdminProc.Pid())
			b.perEntity = float64(br.ConfigBytes) / float64(want)
		}
	}
	var env []string
	var pprofAddr string
	if large && b.cfg.Heap {
		if pprofAddr, err = freeAddr(); err == nil {
			env = append(env, pprofEnv(pprofAddr))
		}
	}
	t0 := time.Now()
	dp, err := c.StartDataplane(ctx, fmt.Sprintf("boot-%d", n), env...)
	if err != nil {
		br.Error = err.Error()
		return br
	}
	defer dp.Stop(syscall.SIGTERM)
	if _, at, err := waitVersion(ctx, dp, sg.Version, max(time.Minute, time.Until(deadline))); err != nil {
		br.Error = err.Error()
		return br
	} else {
		br.Seconds = at.Sub(t0).Seconds()
	}
	br.PeakRSS = procPeakRSS(dp.Pid())
	br.SteadyRSS = procRSS(dp.Pid())
	if !large {
		return br
	}
	if pprofAddr != "" {
		h, err := b.heapProfile(ctx, pprofAddr, fmt.Sprintf("heap-%s-%d-new.pb.gz", mode, n))
		if err != nil {
			h.Error = err.Error()
		}
		h.Label = fmt.Sprintf("%s, %d entities, a new data plane once ready", mode, n)
		br.Heap = &h
	}
	// Restart with the configuration in the store: stop, start, time to
	// /status/ready on the same version.
	dp.Stop(syscall.SIGTERM)
	t0 = time.Now()
	if err := dp.Start(); err != nil {
		br.Notes = append(br.Notes, "restart: "+err.Error())
		return br
	}
	if err := waitReady(ctx, dp, sg.Version, 10*time.Minute); err != nil {
		br.Notes = append(br.Notes, "restart: "+err.Error())
		return br
	}
	br.RestartSeconds = time.Since(t0).Seconds()
	b.logf("%d entities: restarted data plane serving in %.2fs", n, br.RestartSeconds)

	tmp := &modeResult{}
	if err := b.changesWith(ctx, c, []*cluster.Dataplane{dp}, tmp, n, b.cfg.LargeChanges, b.cfg.Rate); err != nil {
		br.Notes = append(br.Notes, "changes: "+err.Error())
		return br
	}
	br.Propagation = &tmp.Propagation
	b.logf("%d entities: propagation p50 %.1fms p99 %.1fms", n, tmp.Propagation.P50, tmp.Propagation.P99)
	if err := b.proxy(ctx, c, dp, tmp); err != nil {
		br.Notes = append(br.Notes, "proxy: "+err.Error())
		return br
	}
	br.ProxyIdle, br.ProxyChurn = &tmp.ProxyIdle, &tmp.ProxyChurn
	b.logf("%d entities: proxy p99 idle %.2fms, under churn %.2fms", n, tmp.ProxyIdle.P99, tmp.ProxyChurn.P99)
	return br
}

// waitReady polls the data plane's /status/ready until it answers 200 at
// version v or later.
func waitReady(ctx context.Context, dp *cluster.Dataplane, v uint64, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		code, body, err := call(ctx, "GET", dp.Status+"/status/ready", nil)
		if err == nil && code == 200 {
			var r struct{ Version uint64 }
			if json.Unmarshal(body, &r) == nil && r.Version >= v {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready at version %d within %s (%d, %v)", dp.NodeID, v, within, code, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func appendOnce(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		mem = strings.Fields(strings.SplitN(string(b), "\n", 2)[0])[1] + " kB RAM"
	}
	return fmt.Sprintf("%d cores (%s), %s, %s %s/%s", runtime.NumCPU(), model, mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
