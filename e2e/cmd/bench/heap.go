package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/e2e/cluster"
)

// pprofFile is added to the data plane's main package at build time (go
// build -overlay), so the bench can take heap profiles of a real data-plane
// process without a profiling endpoint in the product: it listens only when
// BENCH_PPROF_LISTEN is set, on that address.
const pprofFile = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("BENCH_PPROF_LISTEN"); addr != "" {
		go http.ListenAndServe(addr, nil)
	}
}
`

// buildProfiledDataplane rebuilds bin/dataplane with pprofFile overlaid.
func buildProfiledDataplane(ctx context.Context, repo, bin, work string) error {
	src := filepath.Join(work, "bench_pprof.go")
	if err := os.WriteFile(src, []byte(pprofFile), 0o644); err != nil {
		return err
	}
	dir, err := filepath.Abs(filepath.Join(repo, "services", "dataplane"))
	if err != nil {
		return err
	}
	ov, _ := json.Marshal(map[string]any{"Replace": map[string]string{filepath.Join(dir, "zz_bench_pprof.go"): src}})
	ovFile := filepath.Join(work, "overlay.json")
	if err := os.WriteFile(ovFile, ov, 0o644); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-overlay", ovFile, "-o", filepath.Join(bin, "dataplane"), ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build dataplane with pprof: %v\n%s", err, out)
	}
	return nil
}

// heapProfile saves the in-use heap of the data plane listening for pprof
// on addr (after a GC) to out/name and returns the top of
// `go tool pprof -top -sample_index=inuse_space`.
func (b *bench) heapProfile(ctx context.Context, addr, name string) (heapResult, error) {
	return b.profile(ctx, "http://"+addr+"/debug/pprof/heap?gc=1", name, "inuse_space")
}

// cpuProfile saves a CPU profile of d of the data plane listening for
// pprof on addr, with the top of `go tool pprof -top`.
func (b *bench) cpuProfile(ctx context.Context, addr, name string, d time.Duration) (heapResult, error) {
	return b.profile(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, max(1, int(d.Seconds()))), name, "cpu")
}

func (b *bench) profile(ctx context.Context, url, name, index string) (heapResult, error) {
	h := heapResult{File: name}
	code, body, err := call(ctx, "GET", url, nil)
	if err != nil {
		return h, err
	}
	if code != 200 {
		return h, fmt.Errorf("profile: %d", code)
	}
	path := filepath.Join(b.cfg.Out, name)
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return h, err
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=12", "-sample_index="+index,
		filepath.Join(b.bin, "dataplane"), path).Output()
	if err != nil {
		return h, fmt.Errorf("go tool pprof: %w", err)
	}
	// Keep the summary lines and the table, without the header lines
	// naming the local paths.
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	h.Top = strings.Join(keep, "\n")
	return h, nil
}

// heapResult is one heap profile: the file (in the output directory) and
// its top entries by in-use space.
type heapResult struct {
	Label string `json:"label"`
	File  string `json:"file"`
	Top   string `json:"top"`
	Error string `json:"error,omitempty"`
}

func pprofEnv(addr string) string { return "BENCH_PPROF_LISTEN=" + addr }

func freeAddr() (string, error) {
	p, err := cluster.FreePort()
	return fmt.Sprintf("127.0.0.1:%d", p), err
}
