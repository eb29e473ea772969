package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
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
	for i := range b.cfg.Dataplanes {
		dp, err := c.StartDataplane(ctx, fmt.Sprintf("dp%d", i+1))
		if err != nil {
			return nil, err
		}
		dps = append(dps, dp)
	}

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

	if err := b.changes(ctx, c, dps, mr); err != nil {
		return nil, err
	}
	b.logf("%s: propagation p50 %.1fms p99 %.1fms, %.0f bytes per change per data plane",
		mode, mr.Propagation.P50, mr.Propagation.P99, mr.BytesPerChange)

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

// loadConfig replaces the configuration with a generated one of n entities.
func loadConfig(ctx context.Context, c *cluster.Cluster, n int) (entities, size int, secs float64, err error) {
	body, err := json.Marshal(declarative(n, 42))
	if err != nil {
		return 0, 0, 0, err
	}
	t0 := time.Now()
	status, resp, err := call(ctx, "POST", c.Admin+"/config", body)
	if err != nil {
		return 0, 0, 0, err
	}
	if status/100 != 2 {
		return 0, 0, 0, fmt.Errorf("POST /config = %d %.300s", status, resp)
	}
	return max(10, n/10*10), len(body), time.Since(t0).Seconds(), nil
}

// status is the part of a /status document the bench reads.
type status struct {
	Entities        int     `json:"entities"`
	Version         uint64  `json:"version"`
	Hash            string  `json:"hash"`
	BytesConsumed   float64 `json:"bytes_consumed"`
	RecordsConsumed float64 `json:"records_consumed"`
}

func getStatus(ctx context.Context, url string) (status, error) {
	var s status
	code, body, err := call(ctx, "GET", url, nil)
	if err != nil {
		return s, err
	}
	if code != 200 {
		return s, fmt.Errorf("GET %s = %d", url, code)
	}
	return s, json.Unmarshal(body, &s)
}

// converge waits until every data plane holds the sync-gateway's version and
// hash, and the sync-gateway's version has not moved for a second.
func converge(ctx context.Context, c *cluster.Cluster, dps []*cluster.Dataplane, within time.Duration) error {
	deadline := time.Now().Add(within)
	var last status
	stableSince := time.Now()
	for time.Now().Before(deadline) {
		sg, err := getStatus(ctx, c.Sync+"/status")
		if err == nil {
			if sg.Version != last.Version || sg.Hash != last.Hash {
				last, stableSince = sg, time.Now()
			}
			ok := sg.Version > 0 && time.Since(stableSince) > time.Second
			for _, dp := range dps {
				st, err := getStatus(ctx, dp.Status+"/status")
				if err != nil || st.Version != sg.Version || st.Hash != sg.Hash {
					ok = false
				}
			}
			if ok {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("data planes did not converge on version %d within %s", last.Version, within)
}

// waitVersion returns once the data plane has applied version v, with its
// status then. The data plane's /status?wait_version=v long-polls; a data
// plane without it answers at once and this polls.
func waitVersion(ctx context.Context, dp *cluster.Dataplane, v uint64, within time.Duration) (status, time.Time, error) {
	deadline := time.Now().Add(within)
	url := fmt.Sprintf("%s/status?wait_version=%d&timeout=%s", dp.Status, v, within)
	for {
		st, err := getStatus(ctx, url)
		now := time.Now()
		if err == nil && st.Version >= v {
			return st, now, nil
		}
		if now.After(deadline) {
			return st, now, fmt.Errorf("%s: version %d not applied within %s (at %d, %v)", dp.NodeID, v, within, st.Version, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// changes makes single-entity changes at a fixed rate and measures, per
// change, the time from the admin-api's 2xx to applied on every data plane
// and the bytes each data plane fetched for it.
func (b *bench) changes(ctx context.Context, c *cluster.Cluster, dps []*cluster.Dataplane, mr *modeResult) error {
	cpu0, alloc0 := make([]time.Duration, len(dps)), make([]float64, len(dps))
	before := make([]status, len(dps))
	for i, dp := range dps {
		cpu0[i], _ = procCPU(dp.Pid())
		alloc0[i], _ = metric(ctx, dp.Status+"/metrics", "go_memstats_alloc_bytes_total")
		st, err := getStatus(ctx, dp.Status+"/status")
		if err != nil {
			return err
		}
		before[i] = st
	}
	ch := newChanger(c, b.cfg.Entities)
	tick := time.NewTicker(time.Duration(float64(time.Second) / b.cfg.Rate))
	defer tick.Stop()
	var bytesPer, recordsPer []float64
	for i := range b.cfg.Changes {
		<-tick.C
		if err := ch.next(ctx, i); err != nil {
			mr.ChangeErrors++
			mr.Notes = appendOnce(mr.Notes, err.Error())
			continue
		}
		t0 := time.Now()
		after, at, errs := make([]status, len(dps)), make([]time.Time, len(dps)), make([]error, len(dps))
		var wg sync.WaitGroup
		for j, dp := range dps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				after[j], at[j], errs[j] = waitVersion(ctx, dp, before[j].Version+1, 30*time.Second)
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return err
		}
		var worst time.Duration
		for j := range dps {
			worst = max(worst, at[j].Sub(t0))
			bytesPer = append(bytesPer, after[j].BytesConsumed-before[j].BytesConsumed)
			recordsPer = append(recordsPer, after[j].RecordsConsumed-before[j].RecordsConsumed)
			before[j] = after[j]
		}
		mr.propagationSamples = append(mr.propagationSamples, ms(worst))
		mr.Changes++
	}
	mr.Propagation = summarize(mr.propagationSamples)
	mr.BytesPerChange = median(bytesPer)
	mr.RecordsPerChange = median(recordsPer)
	var cpu time.Duration
	var alloc float64
	for i, dp := range dps {
		c1, _ := procCPU(dp.Pid())
		a1, _ := metric(ctx, dp.Status+"/metrics", "go_memstats_alloc_bytes_total")
		cpu += c1 - cpu0[i]
		alloc += a1 - alloc0[i]
		mr.PeakRSS = max(mr.PeakRSS, procPeakRSS(dp.Pid()))
	}
	if mr.Changes > 0 {
		per := float64(mr.Changes * len(dps))
		mr.CPUPerChangeMs = ms(cpu) / per
		mr.AllocPerChange = alloc / per
	}
	return nil
}

// changer cycles through the kinds of single-entity change a user makes:
// patch a route, add a plugin, remove it, rotate a credential.
type changer struct {
	c       *cluster.Cluster
	units   int
	plugins []string
}

// units is the number of generated units (see declarative).
func units(entities int) int { return max(1, entities/10) }

func newChanger(c *cluster.Cluster, entities int) *changer {
	return &changer{c: c, units: units(entities)}
}

func (ch *changer) next(ctx context.Context, i int) error {
	unit := i / 4 % ch.units
	route := fmt.Sprintf("svc-%06d-r1", unit)
	switch i % 4 {
	case 0:
		return expect(ctx, 200, "PATCH", ch.c.Admin+"/routes/"+route,
			fmt.Sprintf(`{"paths":["/svc-%06d/v1","/changed/%d"]}`, unit, i))
	case 1: // r2 has no plugin of its own
		body, err := expectBody(ctx, 201, "POST", fmt.Sprintf("%s/routes/svc-%06d-r2/plugins", ch.c.Admin, unit),
			`{"name":"rate-limiting","instance_name":"bench-`+fmt.Sprint(i)+`","config":{"second":50,"policy":"local"}}`)
		if err != nil {
			return err
		}
		var p struct{ ID string }
		json.Unmarshal(body, &p)
		ch.plugins = append(ch.plugins, p.ID)
		return nil
	case 2:
		if len(ch.plugins) == 0 {
			return errors.New("no plugin to remove")
		}
		id := ch.plugins[len(ch.plugins)-1]
		ch.plugins = ch.plugins[:len(ch.plugins)-1]
		return expect(ctx, 204, "DELETE", ch.c.Admin+"/plugins/"+id, "")
	default:
		consumer := fmt.Sprintf("user-%06d", unit)
		body, err := expectBody(ctx, 200, "GET", ch.c.Admin+"/consumers/"+consumer+"/key-auth", "")
		if err != nil {
			return err
		}
		var list struct{ Data []struct{ ID string } }
		if json.Unmarshal(body, &list); len(list.Data) == 0 {
			return fmt.Errorf("consumer %s has no key-auth credential", consumer)
		}
		return expect(ctx, 200, "PATCH", ch.c.Admin+"/key-auths/"+list.Data[0].ID, fmt.Sprintf(`{"key":"rotated-%d-%d"}`, unit, i))
	}
}

func expect(ctx context.Context, want int, method, url, body string) error {
	_, err := expectBody(ctx, want, method, url, body)
	return err
}

func expectBody(ctx context.Context, want int, method, url, body string) ([]byte, error) {
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	code, resp, err := call(ctx, method, url, b)
	if err != nil {
		return nil, err
	}
	if code != want {
		path := url[strings.Index(url[8:], "/")+8:]
		return resp, fmt.Errorf("%s %s = %d, want %d: %.200s", method, path, code, want, resp)
	}
	return resp, nil
}

var client = &http.Client{Timeout: 10 * time.Minute}

func call(ctx context.Context, method, url string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// proxy measures proxy latency through a data plane, idle and while the
// configuration churns, and calling the upstream directly for reference.
func (b *bench) proxy(ctx context.Context, c *cluster.Cluster, dp *cluster.Dataplane, mr *modeResult) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"ok":true}`))
	})}
	go srv.Serve(l)
	defer srv.Close()
	up := "http://" + l.Addr().String()

	if err := expect(ctx, 201, "POST", c.Admin+"/services", `{"name":"bench-echo","url":"`+up+`"}`); err != nil {
		return err
	}
	if err := expect(ctx, 201, "POST", c.Admin+"/services/bench-echo/routes", `{"name":"bench-echo","paths":["/bench-echo"]}`); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		code, _, err := call(ctx, "GET", dp.Proxy+"/bench-echo", nil)
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench route not served by %s (%d, %v)", dp.NodeID, code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Idle and churn runs alternate in four slices each, so that whatever
	// else the machine does (compaction, vacuum) weighs on both alike.
	const slices = 4
	slice := b.cfg.ProxyDuration / slices
	var direct, idle, churn samples
	churned := 0
	for i := range slices {
		direct.add(loadgen(ctx, up+"/", b.cfg.Concurrency, slice/2))
		idle.add(loadgen(ctx, dp.Proxy+"/bench-echo", b.cfg.Concurrency, slice))
		n, l := b.underChurn(ctx, c, i, func() samples { return loadgen(ctx, dp.Proxy+"/bench-echo", b.cfg.Concurrency, slice) })
		churn.add(l)
		churned += n
	}
	mr.ProxyDirect, mr.ProxyIdle, mr.ProxyChurn, mr.ChurnDone = direct.summary(), idle.summary(), churn.summary(), churned
	return nil
}

// underChurn runs f while route changes are made at the churn rate, and
// returns how many changes were made and f's result.
func (b *bench) underChurn(ctx context.Context, c *cluster.Cluster, round int, f func() samples) (int, samples) {
	churnCtx, stopChurn := context.WithCancel(ctx)
	var wg sync.WaitGroup
	done := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Duration(float64(time.Second) / b.cfg.ChurnRate))
		defer t.Stop()
		for i := round * 1000; ; i++ {
			select {
			case <-churnCtx.Done():
				return
			case <-t.C:
			}
			unit := (i + units(b.cfg.Entities)/2) % units(b.cfg.Entities)
			if expect(churnCtx, 200, "PATCH", fmt.Sprintf("%s/routes/svc-%06d-r1", c.Admin, unit),
				fmt.Sprintf(`{"paths":["/svc-%06d/v1","/churn/%d"]}`, unit, i)) == nil {
				done++
			}
		}
	}()
	l := f()
	stopChurn()
	wg.Wait()
	return done, l
}

// samples are latencies in milliseconds and a count of failed requests.
type samples struct {
	ms     []float64
	errors int
}

func (s *samples) add(o samples) {
	s.ms = append(s.ms, o.ms...)
	s.errors += o.errors
}

func (s samples) summary() latency {
	l := summarize(s.ms)
	l.Errors = s.errors
	return l
}

// loadgen runs conc closed-loop clients against url for d and returns the
// latencies of the successful requests.
func loadgen(ctx context.Context, url string, conc int, d time.Duration) samples {
	tr := &http.Transport{MaxIdleConnsPerHost: conc, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	end := time.Now().Add(d)
	var mu sync.Mutex
	var all []float64
	errs := 0
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []float64
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				resp, err := cl.Get(url)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					mu.Lock()
					errs++
					mu.Unlock()
					continue
				}
				local = append(local, ms(time.Since(t0)))
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return samples{ms: all, errors: errs}
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
