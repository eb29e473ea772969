package monitor

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/deltaplane/deltaplane/services/sync-gateway/internal/pipeline"
)

type fixed pipeline.Status

func (f fixed) Status() pipeline.Status { return pipeline.Status(f) }

func TestHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	pipeline.NewMetrics(reg)
	srv := httptest.NewServer(Handler(fixed{Mode: "incremental", Active: true, Version: 7, Hash: "00000000000000ff", LastTx: 9}, reg))
	defer srv.Close()
	cases := []struct {
		path string
		want []string
	}{
		{"/health", []string{`"ok"`}},
		{"/status", []string{`"mode":"incremental"`, `"active":true`, `"version":7`, `"hash":"00000000000000ff"`, `"last_tx":9`,
			`"entities":0`, `"quarantined":0`, `"consumed":0`, `"published_records":0`}},
		{"/metrics", []string{"deltaplane_sync_version", "deltaplane_sync_quarantined_total", "deltaplane_sync_added_latency_seconds"}},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + c.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			for _, w := range c.want {
				if !strings.Contains(string(body), w) {
					t.Fatalf("%s lacks %s:\n%s", c.path, w, body)
				}
			}
			if c.path == "/status" && !json.Valid(body) {
				t.Fatalf("not JSON: %s", body)
			}
		})
	}
}
