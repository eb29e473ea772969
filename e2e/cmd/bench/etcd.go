package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/deltaplane/deltaplane/e2e/cluster"
)

// etcdResult is the peer measurement: etcd (Debian's etcd-server), which
// APISIX uses to distribute configuration, holding the same entities as
// keys under one prefix, one put per change, N watchers of the prefix,
// spoken to through etcd's JSON gateway (/v3/kv, /v3/watch) as APISIX's
// lua-resty-etcd does.
type etcdResult struct {
	Version        string  `json:"version"`
	Keys           int     `json:"keys"`
	ValueBytes     int     `json:"value_bytes"`
	LoadSeconds    float64 `json:"load_seconds"`
	ServerRSS      int64   `json:"server_rss_bytes"`
	Watchers       int     `json:"watchers"`
	Changes        int     `json:"changes"`
	BytesPerChange float64 `json:"bytes_per_change_per_watcher"`
	Propagation    latency `json:"put_to_watch_ms"`
	RangeSeconds   float64 `json:"new_watcher_range_seconds"`
	RangeBytes     int     `json:"new_watcher_range_bytes"`
	RangePeakRSS   int64   `json:"new_watcher_peak_rss_bytes"`
	Error          string  `json:"error,omitempty"`
}

const etcdPrefix = "/deltaplane/"

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// etcdEntities flattens the bench's declarative configuration of n
// entities into one key per entity with its JSON.
func etcdEntities(n int) [][2]string {
	r := rand.New(rand.NewPCG(42, 1))
	var kv [][2]string
	add := func(kind, name string, v map[string]any) {
		b, _ := json.Marshal(v)
		kv = append(kv, [2]string{etcdPrefix + kind + "/" + name, string(b)})
	}
	for i := range max(1, n/10) {
		s, c, u := unit(r, i)
		for k, ro := range s["routes"].([]any) {
			ro := ro.(map[string]any)
			ps, _ := ro["plugins"].([]any)
			for _, p := range ps {
				p := p.(map[string]any)
				p["route"] = ro["name"]
				add("plugins", fmt.Sprintf("%s-%d", ro["name"], k), p)
			}
			delete(ro, "plugins")
			ro["service"] = s["name"]
			add("routes", ro["name"].(string), ro)
		}
		for _, p := range s["plugins"].([]any) {
			p := p.(map[string]any)
			p["service"] = s["name"]
			add("plugins", s["name"].(string)+"-key-auth", p)
		}
		delete(s, "routes")
		delete(s, "plugins")
		add("services", s["name"].(string), s)
		for _, cr := range c["keyauth_credentials"].([]any) {
			cr := cr.(map[string]any)
			cr["consumer"] = c["username"]
			add("keyauth_credentials", c["username"].(string), cr)
		}
		delete(c, "keyauth_credentials")
		add("consumers", c["username"].(string), c)
		for k, t := range u["targets"].([]any) {
			t := t.(map[string]any)
			t["upstream"] = u["name"]
			add("targets", fmt.Sprintf("%s-%d", u["name"], k), t)
		}
		delete(u, "targets")
		add("upstreams", u["name"].(string), u)
	}
	return kv
}

func (b *bench) etcdPeer(ctx context.Context) (res etcdResult) {
	if err := b.runEtcd(ctx, &res); err != nil {
		res.Error = err.Error()
	}
	return res
}

func (b *bench) runEtcd(ctx context.Context, res *etcdResult) error {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return fmt.Errorf("etcd is not installed (apt-get install etcd-server)")
	}
	cp, err := cluster.FreePort()
	if err != nil {
		return err
	}
	pp, err := cluster.FreePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(b.work, "etcd")
	cu, pu := fmt.Sprintf("http://127.0.0.1:%d", cp), fmt.Sprintf("http://127.0.0.1:%d", pp)
	log, err := os.Create(dir + ".log")
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(bin, "--name", "bench", "--data-dir", dir,
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
		"--initial-cluster", "bench="+pu, "--quota-backend-bytes", strconv.Itoa(8<<30), "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	if err := cluster.WaitHTTP(ctx, cu+"/health", time.Minute); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	if _, body, err := call(ctx, "GET", cu+"/version", nil); err == nil {
		var v struct{ Etcdserver string }
		json.Unmarshal(body, &v)
		res.Version = v.Etcdserver
	}

	// Load: transactions of 128 puts (etcd's default --max-txn-ops).
	kvs := etcdEntities(b.cfg.Entities)
	t0 := time.Now()
	for i := 0; i < len(kvs); i += 128 {
		var ops []any
		for _, kv := range kvs[i:min(i+128, len(kvs))] {
			ops = append(ops, map[string]any{"request_put": map[string]string{"key": b64(kv[0]), "value": b64(kv[1])}})
			res.ValueBytes += len(kv[1])
		}
		body, _ := json.Marshal(map[string]any{"success": ops})
		if err := expect(ctx, 200, "POST", cu+"/v3/kv/txn", string(body)); err != nil {
			return fmt.Errorf("etcd load: %w", err)
		}
	}
	res.Keys, res.LoadSeconds = len(kvs), time.Since(t0).Seconds()
	res.ServerRSS = procRSS(cmd.Process.Pid)

	// A new watcher's range read of the prefix, in its own process so its
	// peak memory is its own.
	rangeEnd := etcdPrefix[:len(etcdPrefix)-1] + string(etcdPrefix[len(etcdPrefix)-1]+1)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	rc := exec.CommandContext(ctx, self)
	rc.Env = append(os.Environ(), "BENCH_ETCD_RANGE="+cu)
	t0 = time.Now()
	out, err := rc.Output()
	if err != nil {
		return fmt.Errorf("etcd range read: %v %s", err, out)
	}
	res.RangeSeconds = time.Since(t0).Seconds()
	res.RangeBytes, _ = strconv.Atoi(string(bytes.TrimSpace(out)))
	if ru, ok := rc.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.RangePeakRSS = ru.Maxrss * 1024
	}

	// N watchers, each through a byte-counting TCP relay.
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	res.Watchers = b.cfg.EtcdWatchers
	ws := make([]*etcdWatcher, res.Watchers)
	for i := range ws {
		relay, counted, err := countingRelay(wctx, fmt.Sprintf("127.0.0.1:%d", cp))
		if err != nil {
			return err
		}
		ws[i] = &etcdWatcher{seen: map[int64]time.Time{}, counted: counted, ready: make(chan struct{})}
		go ws[i].watch(wctx, "http://"+relay, rangeEnd)
		select {
		case <-ws[i].ready:
		case <-time.After(30 * time.Second):
			return fmt.Errorf("etcd watcher %d not created", i)
		}
	}
	bytes0 := int64(0)
	for _, w := range ws {
		bytes0 += w.counted.Load()
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / b.cfg.Rate))
	defer tick.Stop()
	var lat []float64
	for i := range b.cfg.Changes {
		<-tick.C
		unit := i % max(1, b.cfg.Entities/10)
		key := fmt.Sprintf("%sroutes/svc-%06d-r1", etcdPrefix, unit)
		val := fmt.Sprintf(`{"name":"svc-%06d-r1","paths":["/svc-%06d/v1","/changed/%d"],"methods":["GET","POST"],"hosts":["api-%d.example.com"],"strip_path":true,"tags":["env-bench"],"service":"svc-%06d"}`, unit, unit, i, unit%50, unit)
		code, body, err := call(ctx, "POST", cu+"/v3/kv/put", []byte(fmt.Sprintf(`{"key":%q,"value":%q}`, b64(key), b64(val))))
		put := time.Now()
		if err != nil || code != 200 {
			return fmt.Errorf("etcd put: %d %v %.200s", code, err, body)
		}
		var pr struct {
			Header struct {
				Revision string `json:"revision"`
			} `json:"header"`
		}
		json.Unmarshal(body, &pr)
		rev, _ := strconv.ParseInt(pr.Header.Revision, 10, 64)
		var worst time.Duration
		for _, w := range ws {
			at, err := w.wait(ctx, rev, 30*time.Second)
			if err != nil {
				return err
			}
			worst = max(worst, at.Sub(put))
		}
		lat = append(lat, ms(worst))
	}
	res.Changes = len(lat)
	res.Propagation = summarize(lat)
	bytes1 := int64(0)
	for _, w := range ws {
		bytes1 += w.counted.Load()
	}
	if res.Changes > 0 {
		res.BytesPerChange = float64(bytes1-bytes0) / float64(res.Changes*len(ws))
	}
	return nil
}

// etcdWatcher is one watch stream on the prefix; it notes when each
// revision arrived.
type etcdWatcher struct {
	mu      sync.Mutex
	seen    map[int64]time.Time
	counted *atomic.Int64
	ready   chan struct{}
}

func (w *etcdWatcher) watch(ctx context.Context, base, rangeEnd string) {
	body := fmt.Sprintf(`{"create_request":{"key":%q,"range_end":%q}}`, b64(etcdPrefix), b64(rangeEnd))
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v3/watch", bytes.NewReader([]byte(body)))
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(bufio.NewReader(resp.Body))
	for {
		var m struct {
			Result struct {
				Created bool `json:"created"`
				Events  []struct {
					Kv struct {
						ModRevision string `json:"mod_revision"`
					} `json:"kv"`
				} `json:"events"`
			} `json:"result"`
		}
		if err := dec.Decode(&m); err != nil {
			return
		}
		now := time.Now()
		if m.Result.Created {
			close(w.ready)
		}
		w.mu.Lock()
		for _, e := range m.Result.Events {
			rev, _ := strconv.ParseInt(e.Kv.ModRevision, 10, 64)
			w.seen[rev] = now
		}
		w.mu.Unlock()
	}
}

func (w *etcdWatcher) wait(ctx context.Context, rev int64, within time.Duration) (time.Time, error) {
	deadline := time.Now().Add(within)
	for {
		w.mu.Lock()
		at, ok := w.seen[rev]
		w.mu.Unlock()
		if ok {
			return at, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("etcd watcher: revision %d not seen within %s", rev, within)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// countingRelay forwards a loopback port to target and counts the bytes
// sent from target to the client.
func countingRelay(ctx context.Context, target string) (string, *atomic.Int64, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	var n atomic.Int64
	go func() { <-ctx.Done(); l.Close() }()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer s.Close()
				go func() { io.Copy(s, c); s.Close() }()
				buf := make([]byte, 32<<10)
				for {
					k, err := s.Read(buf)
					if k > 0 {
						n.Add(int64(k))
						if _, err := c.Write(buf[:k]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String(), &n, nil
}

// etcdRangeRead is the child process of a new watcher's range read: it
// reads every key under the prefix, decodes the values as a watcher would,
// and prints the response's size.
func etcdRangeRead(base string) error {
	rangeEnd := etcdPrefix[:len(etcdPrefix)-1] + string(etcdPrefix[len(etcdPrefix)-1]+1)
	resp, err := http.Post(base+"/v3/kv/range", "application/json",
		bytes.NewReader([]byte(fmt.Sprintf(`{"key":%q,"range_end":%q}`, b64(etcdPrefix), b64(rangeEnd)))))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Kvs []struct{ Key, Value string }
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return err
	}
	m := make(map[string]json.RawMessage, len(r.Kvs))
	for _, kv := range r.Kvs {
		k, _ := base64.StdEncoding.DecodeString(kv.Key)
		v, _ := base64.StdEncoding.DecodeString(kv.Value)
		m[string(k)] = v
	}
	if len(m) == 0 {
		return fmt.Errorf("empty range")
	}
	fmt.Println(len(raw))
	return nil
}
