package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/segmentio/kafka-go"
)

// latency is a distribution summary in milliseconds.
type latency struct {
	N      int     `json:"n"`
	P50    float64 `json:"p50"`
	P95    float64 `json:"p95"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
	Errors int     `json:"errors,omitempty"`
}

// MarshalJSON writes a quantile of no samples (NaN, which JSON cannot
// carry) as null.
func (l latency) MarshalJSON() ([]byte, error) {
	num := func(f float64) *float64 {
		if math.IsNaN(f) {
			return nil
		}
		return &f
	}
	return json.Marshal(struct {
		N      int      `json:"n"`
		P50    *float64 `json:"p50"`
		P95    *float64 `json:"p95"`
		P99    *float64 `json:"p99"`
		Max    float64  `json:"max"`
		Errors int      `json:"errors,omitempty"`
	}{l.N, num(l.P50), num(l.P95), num(l.P99), l.Max, l.Errors})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantile of sorted samples, nearest rank.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func summarize(samples []float64) latency {
	s := slices.Clone(samples)
	slices.Sort(s)
	l := latency{N: len(s), P50: quantile(s, .50), P95: quantile(s, .95), P99: quantile(s, .99)}
	if len(s) > 0 {
		l.Max = s[len(s)-1]
	}
	return l
}

func median(samples []float64) float64 {
	s := slices.Clone(samples)
	slices.Sort(s)
	return quantile(s, .5)
}

// procCPU is the user+system CPU time a process has used.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// resetPeakRSS sets a process's VmHWM back to its current RSS (Linux's
// clear_refs value 5), so that procPeakRSS then reports the peak of what
// follows. Without permission the peak stays the lifetime one.
func resetPeakRSS(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// procPeakRSS is a process's peak resident set size (VmHWM) in bytes.
func procPeakRSS(pid int) int64 { return procStatusBytes(pid, "VmHWM:") }

// procRSS is a process's current resident set size (VmRSS) in bytes.
func procRSS(pid int) int64 { return procStatusBytes(pid, "VmRSS:") }

func procStatusBytes(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field) {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// metric reads one counter or gauge from a Prometheus text endpoint.
func metric(ctx context.Context, url, name string) (float64, error) {
	code, body, err := call(ctx, "GET", url, nil)
	if err != nil {
		return 0, err
	}
	if code != 200 {
		return 0, fmt.Errorf("GET %s = %d", url, code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	f, ok := fams[name]
	if !ok || len(f.Metric) == 0 {
		return 0, fmt.Errorf("%s has no metric %s", url, name)
	}
	m := f.Metric[0]
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue(), nil
	case m.Gauge != nil:
		return m.Gauge.GetValue(), nil
	case m.Untyped != nil:
		return m.Untyped.GetValue(), nil
	}
	return 0, fmt.Errorf("%s: %s is not a counter or gauge", url, name)
}

// kafkaFloor measures produce-to-consume latency of single records on the
// broker: the floor under any end-to-end propagation figure.
func kafkaFloor(ctx context.Context, brokerAddr string, n int) (latency, error) {
	topic := fmt.Sprintf("bench-floor-%d", time.Now().UnixNano())
	if err := broker.EnsureTopics(ctx, []string{brokerAddr}, time.Minute, broker.Log(topic)); err != nil {
		return latency{}, err
	}
	defer broker.Client([]string{brokerAddr}).DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	w := &kafka.Writer{Addr: kafka.TCP(brokerAddr), Topic: topic, RequiredAcks: kafka.RequireAll, BatchSize: 1, BatchTimeout: time.Millisecond}
	defer w.Close()
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{brokerAddr}, Topic: topic, Partition: 0, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 10 * time.Millisecond})
	defer r.Close()
	// Warm up both connections.
	if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("warm-up")}); err != nil {
		return latency{}, err
	}
	if _, err := r.ReadMessage(ctx); err != nil {
		return latency{}, err
	}
	samples := make([]float64, 0, n)
	for i := range n {
		t0 := time.Now()
		if err := w.WriteMessages(ctx, kafka.Message{Value: []byte(strconv.Itoa(i))}); err != nil {
			return latency{}, err
		}
		if _, err := r.ReadMessage(ctx); err != nil {
			return latency{}, err
		}
		samples = append(samples, ms(time.Since(t0)))
	}
	return summarize(samples), nil
}

// listenerPID finds the process listening on addr's TCP port (0 when not
// found): the socket's inode in /proc/net/tcp{,6}, then the process
// holding it among /proc/*/fd.
func listenerPID(addr string) int {
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	port, _ := strconv.Atoi(ps)
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fl := strings.Fields(line)
			if len(fl) < 10 || fl[3] != "0A" { // LISTEN
				continue
			}
			_, hp, _ := strings.Cut(fl[1], ":")
			if p, _ := strconv.ParseInt(hp, 16, 32); int(p) == port {
				inodes["socket:["+fl[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, fd := range fds {
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && inodes[l] {
				return pid
			}
		}
	}
	return 0
}
