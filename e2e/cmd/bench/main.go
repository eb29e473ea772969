// Command bench measures deltaplane's incremental sync against the full-sync
// baseline on the real system (Kafka, Postgres, admin-api, sync-gateway, N
// data-plane processes), both modes in one invocation so every ratio is
// measured side by side. It writes a markdown table, a JSON file and PNG
// plots. It asserts nothing: it reports.
//
//	go run ./cmd/bench -entities 30000 -dataplanes 2 -changes 100 -out ../docs/benchmarks
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if up := os.Getenv("BENCH_BARE_PROXY"); up != "" {
		if err := bareProxy(up, os.Getenv("BENCH_BARE_LISTEN")); err != nil {
			fmt.Fprintln(os.Stderr, "bench: bare proxy:", err)
			os.Exit(1)
		}
		return
	}
	if base := os.Getenv("BENCH_ETCD_RANGE"); base != "" {
		if err := etcdRangeRead(base); err != nil {
			fmt.Fprintln(os.Stderr, "bench: etcd range read:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	Entities      int           `json:"entities"`
	Bootstrap     []int         `json:"bootstrap_sizes"`
	Dataplanes    int           `json:"dataplanes"`
	Changes       int           `json:"changes"`
	Rate          float64       `json:"changes_per_second"`
	ProxyDuration time.Duration `json:"proxy_duration"`
	ChurnRate     float64       `json:"churn_per_second"`
	Concurrency   int           `json:"proxy_concurrency"`
	Modes         []string      `json:"modes"`
	BrokerPID     int           `json:"broker_pid,omitempty"`
	Out           string        `json:"-"`
	Kafka         string        `json:"-"`
	Postgres      string        `json:"-"`
	Repo          string        `json:"-"`
	Command       string        `json:"command"`
	Keep          bool          `json:"-"`

	Writers       int           `json:"writers"`
	WriteDuration time.Duration `json:"write_duration"`
	WrkDuration   time.Duration `json:"wrk_duration"`
	Etcd          bool          `json:"etcd"`
	EtcdWatchers  int           `json:"etcd_watchers"`
	Fleet         int           `json:"fleet_dataplanes"`
	FleetEntities int           `json:"fleet_entities"`
	FleetChanges  int           `json:"fleet_changes"`
	FleetRate     float64       `json:"fleet_changes_per_second"`
	Followers     int           `json:"followers"`
	LargeChanges  int           `json:"large_changes"`
	LargeModes    []string      `json:"large_modes"`
	Heap          bool          `json:"heap_profiles"`
	IdleWindow    time.Duration `json:"idle_window"`
	BootTimeout   time.Duration `json:"boot_timeout"`
	ExportMax     int           `json:"export_max"`
}

func parseFlags(args []string, getenv func(string) string) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.IntVar(&c.Entities, "entities", 30000, "entities in the configuration for the change and proxy phases")
	boot := fs.String("bootstrap", "30000,100000", "comma-separated configuration sizes for the bootstrap phase")
	fs.IntVar(&c.Dataplanes, "dataplanes", 2, "data planes per mode")
	fs.IntVar(&c.Changes, "changes", 100, "single-entity changes per mode")
	fs.Float64Var(&c.Rate, "rate", 10, "changes per second")
	fs.DurationVar(&c.ProxyDuration, "proxy-duration", 10*time.Second, "duration of each proxy latency run")
	fs.Float64Var(&c.ChurnRate, "churn", 20, "configuration changes per second during the churn proxy run")
	fs.IntVar(&c.Concurrency, "concurrency", 4, "concurrent proxy clients")
	modes := fs.String("modes", "incremental,full", "sync modes to compare")
	fs.StringVar(&c.Out, "out", "docs/benchmarks", "output directory")
	fs.StringVar(&c.Kafka, "kafka", getenv("DELTAPLANE_TEST_KAFKA"), "Kafka broker")
	fs.StringVar(&c.Postgres, "postgres", getenv("DELTAPLANE_TEST_POSTGRES"), "Postgres DSN allowed to CREATE DATABASE")
	fs.StringVar(&c.Repo, "repo", ".", "repository root (to build the services)")
	fs.IntVar(&c.BrokerPID, "broker-pid", -1, "pid of the Kafka broker's process, to read its CPU time from /proc (0: not measured; -1: the process listening on -kafka's port)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the processes' logs and stores (the path is printed)")
	fs.IntVar(&c.Writers, "writers", 8, "concurrent Admin API clients of the write-throughput run")
	fs.DurationVar(&c.WriteDuration, "write-duration", 10*time.Second, "duration of the write-throughput run (0: none)")
	fs.DurationVar(&c.WrkDuration, "wrk-duration", 0, "duration of each wrk run: upstream direct, bare Go reverse proxy, nginx, data plane (0: none; needs wrk and nginx)")
	fs.BoolVar(&c.Etcd, "etcd", false, "measure etcd side by side (needs etcd-server)")
	fs.IntVar(&c.EtcdWatchers, "etcd-watchers", 2, "etcd watchers of the prefix")
	fs.IntVar(&c.Fleet, "fleet", 0, "data-plane processes of the fleet profile (0: none)")
	fs.IntVar(&c.FleetEntities, "fleet-entities", 10000, "entities in the fleet profile's configuration")
	fs.IntVar(&c.FleetChanges, "fleet-changes", 50, "changes in the fleet profile")
	fs.Float64Var(&c.FleetRate, "fleet-rate", 5, "changes per second in the fleet profile")
	fs.IntVar(&c.Followers, "followers", 0, "lightweight dp.deltas followers in the fleet profile (0: none)")
	fs.IntVar(&c.LargeChanges, "large-changes", 50, "changes measured on the new data plane of the largest bootstrap size")
	largeModes := fs.String("large-modes", "incremental", "modes that measure restart, propagation, proxy and heap at the largest bootstrap size")
	fs.DurationVar(&c.IdleWindow, "idle-window", 10*time.Second, "how long the broker's idle CPU is sampled")
	fs.DurationVar(&c.BootTimeout, "boot-timeout", 20*time.Minute, "longest wait for an import to be sequenced and applied, each bootstrap size")
	fs.IntVar(&c.ExportMax, "export-max", 1000000, "largest configuration measured with GET /config; above it the size is derived from the largest one measured (the admin-api streams its export since a2ad58a: 1M entities measured, 600 MB in 144 s with no RSS growth)")
	fs.BoolVar(&c.Heap, "heap", false, "heap profiles of data planes (a dataplane built with pprof)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, s := range strings.Split(*boot, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return c, fmt.Errorf("-bootstrap: bad size %q", s)
		}
		c.Bootstrap = append(c.Bootstrap, n)
	}
	c.Modes = strings.Split(*modes, ",")
	c.LargeModes = strings.Split(*largeModes, ",")
	if c.BrokerPID < 0 {
		c.BrokerPID = listenerPID(c.Kafka)
	}
	c.Command = "bench " + strings.Join(args, " ")
	switch {
	case c.Kafka == "" || c.Postgres == "":
		return c, fmt.Errorf("need -kafka and -postgres (or DELTAPLANE_TEST_KAFKA, DELTAPLANE_TEST_POSTGRES; make bench sets them)")
	case c.Dataplanes < 1 || c.Changes < 1 || c.Rate <= 0 || c.Concurrency < 1:
		return c, fmt.Errorf("dataplanes, changes, rate and concurrency must be positive")
	}
	return c, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := parseFlags(args, getenv)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "deltaplane-bench")
	if err != nil {
		return err
	}
	if cfg.Keep {
		fmt.Fprintf(stdout, "bench: logs and stores kept in %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}

	b := &bench{cfg: cfg, work: work, log: stdout}
	res, err := b.run(ctx)
	if err != nil {
		return err
	}
	if err := writeReport(cfg, res, filepath.Clean(cfg.Out)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bench: report written to %s\n", filepath.Join(cfg.Out, "RESULTS.md"))
	return nil
}
