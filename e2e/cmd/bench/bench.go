package main

import (
	"context"
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
	PeakRSS          int64   `json:"dp_peak_rss_bytes"`

	ProxyDirect latency `json:"proxy_direct_ms"`
	ProxyIdle   latency `json:"proxy_idle_ms"`
	ProxyChurn  latency `json:"proxy_churn_ms"`
	ChurnDone   int     `json:"churn_changes"`

	Bootstrap []bootstrapResult `json:"bootstrap"`
	Notes     []string          `json:"notes,omitempty"`

	propagationSamples []float64
}

type bootstrapResult struct {
	Entities int     `json:"entities"`
	Seconds  float64 `json:"seconds"`
	PeakRSS  int64   `json:"peak_rss_bytes"`
	Error    string  `json:"error,omitempty"`
}

type bench struct {
	cfg  config
	work string
	log  io.Writer
	bin  string
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
		Env: []string{"ADMIN_MAX_BODY_BYTES=4294967296"},
	})
	if c != nil {
		defer c.Close()
	}
	if err != nil {
		return nil, err
	}
	var dps []*cluster.Dataplane
	start := time.Now()
	for i := range b.cfg.Dataplanes {
		dp, err := c.StartDataplane(ctx, fmt.Sprintf("dp%d", i+1))
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
	if pid := b.cfg.BrokerPID; pid > 0 {
		// The broker serving every data plane's idle fetch and heartbeat.
		const window = 10 * time.Second
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
	b.logf("%s: data-plane RSS max %d MiB, total %d MiB", mode, mr.RSSMax>>20, mr.RSSTotal>>20)
	if b.cfg.BrokerPID > 0 {
		b.logf("%s: broker CPU %.1f ms per change", mode, mr.BrokerCPUPerChng)
	}

	if err := b.proxy(ctx, c, dps[0], mr); err != nil {
		return nil, err
	}
	b.logf("%s: proxy p99 idle %.2fms, under churn %.2fms", mode, mr.ProxyIdle.P99, mr.ProxyChurn.P99)

	for _, dp := range dps {
		dp.Stop(syscall.SIGTERM)
	}
	for _, size := range b.cfg.Bootstrap {
		br := b.bootstrap(ctx, c, size)
		mr.Bootstrap = append(mr.Bootstrap, br)
		b.logf("%s: bootstrap of %d entities: %.2fs, peak RSS %d MiB %s", mode, size, br.Seconds, br.PeakRSS>>20, br.Error)
	}
	return mr, nil
}

// bootstrap loads a configuration of n entities, then starts a new data
// plane and times it from process start to ready on the current version.
func (b *bench) bootstrap(ctx context.Context, c *cluster.Cluster, n int) bootstrapResult {
	br := bootstrapResult{Entities: n}
	if _, _, _, err := loadConfig(ctx, c, n); err != nil {
		br.Error = err.Error()
		return br
	}
	// The import is one transaction, hence one version: wait until the
	// sync-gateway has sequenced it (it holds exactly the generated
	// entities) before timing a new data plane.
	want := max(10, n/10*10)
	var sg status
	deadline := time.Now().Add(30 * time.Minute)
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
	t0 := time.Now()
	dp, err := c.StartDataplane(ctx, fmt.Sprintf("boot-%d", n))
	if err != nil {
		br.Error = err.Error()
		return br
	}
	defer dp.Stop(syscall.SIGTERM)
	if _, at, err := waitVersion(ctx, dp, sg.Version, 30*time.Minute); err != nil {
		br.Error = err.Error()
	} else {
		br.Seconds = at.Sub(t0).Seconds()
	}
	br.PeakRSS = procPeakRSS(dp.Pid())
	return br
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
