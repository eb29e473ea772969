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
	fs.IntVar(&c.BrokerPID, "broker-pid", 0, "pid of the Kafka broker's process, to read its CPU time from /proc (0: not measured)")
	fs.BoolVar(&c.Keep, "keep", false, "keep the processes' logs and stores (the path is printed)")
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
