package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/deltaplane/deltaplane/e2e/cluster"
)

// loadConfig replaces the configuration with a generated one of n entities.
func loadConfig(ctx context.Context, c *cluster.Cluster, n int) (entities, size int, secs float64, err error) {
	l, err := importConfig(ctx, c, n)
	return l.Entities, l.BodyBytes, l.Seconds, err
}

// importResult is one POST /config: its body's size, its time to 2xx, the
// entity changes it made (inserted + updated + deleted) and when it
// answered.
type importResult struct {
	Entities  int       `json:"entities"`
	BodyBytes int       `json:"body_bytes"`
	Seconds   float64   `json:"seconds"`
	Changes   int       `json:"changes"`
	Done      time.Time `json:"-"`
}

func importConfig(ctx context.Context, c *cluster.Cluster, n int) (importResult, error) {
	r := importResult{Entities: max(10, n/10*10)}
	body, err := declarativeJSON(n, 42)
	if err != nil {
		return r, err
	}
	r.BodyBytes = len(body)
	t0 := time.Now()
	status, resp, err := call(ctx, "POST", c.Admin+"/config", body)
	if err != nil {
		return r, err
	}
	if status/100 != 2 {
		return r, fmt.Errorf("POST /config = %d %.300s", status, resp)
	}
	r.Done = time.Now()
	r.Seconds = r.Done.Sub(t0).Seconds()
	var res struct{ Changes int }
	json.Unmarshal(resp, &res)
	r.Changes = res.Changes
	return r, nil
}

// configBytes is the size of GET /config, the configuration as the Admin
// API exports it (a JSON document): the yardstick of data-plane memory.
func configBytes(ctx context.Context, c *cluster.Cluster) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", c.Admin+"/config", nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return 0, fmt.Errorf("GET /config = %d %s", resp.StatusCode, body)
	}
	// Counted, not kept (572 MiB at 1M entities).
	n, err := io.Copy(io.Discard, resp.Body)
	return int(n), err
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
		if now.After(deadline) || ctx.Err() != nil {
			return st, now, fmt.Errorf("%s: version %d not applied within %s (at version %d holding %d entities, %v)", dp.NodeID, v, within, st.Version, st.Entities, err)
		}
		time.Sleep(time.Millisecond)
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

var client = &http.Client{Timeout: 30 * time.Minute}

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
