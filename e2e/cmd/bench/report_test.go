package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestResultsOfPhasesNotRunEncode: a phase that measured nothing (e.g.
// -proxy-duration 0) leaves quantiles of no samples, which results.json
// writes as null instead of failing on NaN.
func TestResultsOfPhasesNotRunEncode(t *testing.T) {
	res := results{KafkaFloor: summarize(nil), Modes: []modeResult{{Mode: "incremental", ProxyIdle: summarize(nil), ProxyChurn: summarize([]float64{1, 2})}}}
	j, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"proxy_idle_ms":{"n":0,"p50":null,"p95":null,"p99":null,"max":0}`, `"proxy_churn_ms":{"n":2,"p50":1,"p95":2,"p99":2,"max":2}`} {
		if !strings.Contains(string(j), want) {
			t.Errorf("results.json lacks %s:\n%s", want, j)
		}
	}
}
