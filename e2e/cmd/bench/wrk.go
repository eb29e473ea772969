package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/deltaplane/deltaplane/e2e/cluster"
)

// wrkResult is one wrk run against one target.
type wrkResult struct {
	Target    string  `json:"target"`
	URL       string  `json:"url"`
	PerSecond float64 `json:"requests_per_second"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Non2xx    int     `json:"non_2xx"`
	Error     string  `json:"error,omitempty"`
}

// Proxy targets, in the order they run and are reported.
const (
	tDirect = "upstream called directly"
	tBare   = "bare Go httputil.ReverseProxy"
	tNginx  = "nginx"
	tDP     = "data plane, route without plugins"
	tDPAuth = "data plane, key-auth + rate-limiting"
)

// proxyPeers runs wrk (16 connections) against one upstream directly,
// through a bare httputil.ReverseProxy, through nginx and through the data
// plane dp (a route without plugins, and one with key-auth and
// rate-limiting), one after another for d each.
func (b *bench) proxyPeers(ctx context.Context, c *cluster.Cluster, dp *cluster.Dataplane, pprofAddr string, d time.Duration, mr *modeResult) ([]wrkResult, error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return nil, fmt.Errorf("wrk is not installed (apt-get install wrk)")
	}
	up, stopUp, err := serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	if err != nil {
		return nil, err
	}
	defer stopUp()
	upURL, _ := url.Parse(up)
	bare, stopBare, err := startBareProxy(ctx, up)
	if stopBare != nil {
		defer stopBare()
	}
	if err != nil {
		return nil, err
	}
	nginxURL, stopNginx, nginxErr := b.startNginx(ctx, upURL.Host)
	if stopNginx != nil {
		defer stopNginx()
	}

	// The data plane's routes to the same upstream.
	for _, req := range [][3]string{
		{"POST", "/services", `{"name":"bench-wrk","url":"` + up + `"}`},
		{"POST", "/services/bench-wrk/routes", `{"name":"bench-wrk","paths":["/bench-wrk"]}`},
		{"POST", "/services/bench-wrk/routes", `{"name":"bench-wrk-auth","paths":["/bench-wrk-auth"]}`},
		{"POST", "/routes/bench-wrk-auth/plugins", `{"name":"key-auth"}`},
		{"POST", "/routes/bench-wrk-auth/plugins", `{"name":"rate-limiting","config":{"second":1000000,"policy":"local"}}`},
		{"POST", "/consumers", `{"username":"bench-wrk-user"}`},
		{"POST", "/consumers/bench-wrk-user/key-auth", `{"key":"bench-wrk-key"}`},
	} {
		if err := expect(ctx, 201, req[0], c.Admin+req[1], req[2]); err != nil {
			return nil, err
		}
	}
	auth := []string{"-H", "apikey: bench-wrk-key"}
	for _, u := range []struct {
		path string
		hdr  []string
	}{{"/bench-wrk", nil}, {"/bench-wrk-auth", auth}} {
		if err := waitServed(ctx, dp.Proxy+u.path, u.hdr); err != nil {
			return nil, err
		}
	}

	var out []wrkResult
	for _, t := range []struct {
		name, url string
		hdr       []string
		err       error
	}{
		{tDirect, up + "/", nil, nil},
		{tBare, bare + "/", nil, nil},
		{tNginx, nginxURL + "/", nil, nginxErr},
		{tDP, dp.Proxy + "/bench-wrk", nil, nil},
		{tDPAuth, dp.Proxy + "/bench-wrk-auth", auth, nil},
	} {
		if t.err != nil {
			out = append(out, wrkResult{Target: t.name, Error: t.err.Error()})
			continue
		}
		// A CPU profile of the data plane while wrk runs through it.
		var prof chan heapResult
		if pprofAddr != "" && (t.name == tDP || t.name == tDPAuth) {
			prof = make(chan heapResult, 1)
			name := "cpu-dp-wrk.pb.gz"
			if t.name == tDPAuth {
				name = "cpu-dp-wrk-auth.pb.gz"
			}
			go func() {
				time.Sleep(d / 10)
				h, err := b.cpuProfile(ctx, pprofAddr, name, d*7/10)
				if err != nil {
					h.Error = err.Error()
				}
				h.Label = "CPU of the data plane under wrk, " + t.name
				prof <- h
			}()
		}
		r := runWrk(ctx, t.url, 16, d, t.hdr)
		if prof != nil {
			h := <-prof
			mr.Profiles = append(mr.Profiles, h)
		}
		r.Target = t.name
		b.logf("wrk %s: %.0f req/s, p50 %.2fms, p99 %.2fms %s", t.name, r.PerSecond, r.P50, r.P99, r.Error)
		out = append(out, r)
	}
	return out, nil
}

// waitServed polls url (with header hdr, as wrk's -H pairs) until it
// answers 200.
func waitServed(ctx context.Context, u string, hdr []string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
		for i := 1; i < len(hdr); i += 2 {
			k, v, _ := strings.Cut(hdr[i], ": ")
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		code := 0
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
			if code == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not served (%d, %v)", u, code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serve serves h on a loopback port.
func serve(h http.Handler) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	return "http://" + l.Addr().String(), func() { srv.Close() }, nil
}

// startNginx runs Debian's nginx (two workers, as the Go proxies have two
// cores) in front of upstream host:port, with keep-alive to the upstream.
func (b *bench) startNginx(ctx context.Context, upstream string) (string, func(), error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return "", nil, fmt.Errorf("nginx is not installed (apt-get install nginx)")
	}
	port, err := cluster.FreePort()
	if err != nil {
		return "", nil, err
	}
	dir := filepath.Join(b.work, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, err
	}
	conf := fmt.Sprintf(`worker_processes 2;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream bench { server %[2]s; keepalive 64; }
  server {
    listen 127.0.0.1:%[3]d;
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, dir, upstream, port)
	cf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "-c", cf, "-p", dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	if err := waitServed(ctx, u+"/", nil); err != nil {
		return "", stop, err
	}
	return u, stop, nil
}

// runWrk runs wrk with conn connections on two threads for d.
func runWrk(ctx context.Context, u string, conn int, d time.Duration, hdr []string) wrkResult {
	r := wrkResult{URL: u}
	args := append([]string{"-t2", fmt.Sprintf("-c%d", conn), fmt.Sprintf("-d%ds", max(1, int(d.Seconds()))), "--latency"}, hdr...)
	out, err := exec.CommandContext(ctx, "wrk", append(args, u)...).CombinedOutput()
	if err != nil {
		r.Error = fmt.Sprintf("wrk: %v: %.300s", err, out)
		return r
	}
	inDist := false
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == "Latency" && len(f) >= 2 && f[1] == "Distribution":
			inDist = true
		case inDist && len(f) == 2 && f[0] == "50%":
			r.P50 = wrkDuration(f[1])
		case inDist && len(f) == 2 && f[0] == "99%":
			r.P99 = wrkDuration(f[1])
		case f[0] == "Requests/sec:" && len(f) == 2:
			r.PerSecond, _ = strconv.ParseFloat(f[1], 64)
		case strings.HasPrefix(line, "  Non-2xx or 3xx responses:"):
			r.Non2xx, _ = strconv.Atoi(f[len(f)-1])
		}
	}
	if r.PerSecond == 0 {
		r.Error = fmt.Sprintf("no result in wrk's output: %.300s", out)
	}
	return r
}

// wrkDuration parses wrk's 635.00us, 1.21ms, 2.00s into milliseconds.
func wrkDuration(s string) float64 {
	for _, u := range []struct {
		suffix string
		ms     float64
	}{{"us", 1e-3}, {"ms", 1}, {"s", 1000}, {"m", 60000}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f * u.ms
		}
	}
	return 0
}

// startBareProxy runs this binary as a bare httputil.ReverseProxy to
// upstream, in its own process as the data plane and nginx are.
func startBareProxy(ctx context.Context, upstream string) (string, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	port, err := cluster.FreePort()
	if err != nil {
		return "", nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), "BENCH_BARE_PROXY="+upstream, "BENCH_BARE_LISTEN="+addr)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	u := "http://" + addr
	if err := waitServed(ctx, u+"/", nil); err != nil {
		return "", stop, err
	}
	return u, stop, nil
}

// bareProxy is the child process of startBareProxy: the standard
// library's reverse proxy and nothing else.
func bareProxy(upstream, listen string) error {
	u, err := url.Parse(upstream)
	if err != nil {
		return err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	rp.ErrorLog = log.New(io.Discard, "", 0) // wrk's connections cut at the end of a run
	return http.ListenAndServe(listen, rp)
}
