package health

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Config is an upstream's healthchecks field as Kong defines it, with
// Kong's defaults for every field left out.
type Config struct {
	Active  Active  `json:"active"`
	Passive Passive `json:"passive"`
	// Threshold is Kong's healthchecks.threshold: the percentage of the
	// targets' weight that must be healthy for the upstream to take
	// traffic at all.
	Threshold float64 `json:"threshold"`
}

// Active is healthchecks.active: probes sent to every target.
type Active struct {
	Type                   string              `json:"type"` // http, https, tcp
	HTTPPath               string              `json:"http_path"`
	Timeout                float64             `json:"timeout"` // seconds
	Concurrency            int                 `json:"concurrency"`
	HTTPSVerifyCertificate bool                `json:"https_verify_certificate"`
	HTTPSSNI               *string             `json:"https_sni"`
	Headers                map[string][]string `json:"headers"`
	Healthy                struct {
		Interval     float64 `json:"interval"` // seconds between probes of a healthy target; 0: none
		Successes    int     `json:"successes"`
		HTTPStatuses []int   `json:"http_statuses"`
	} `json:"healthy"`
	Unhealthy struct {
		Interval     float64 `json:"interval"` // seconds between probes of an unhealthy target; 0: none
		HTTPFailures int     `json:"http_failures"`
		TCPFailures  int     `json:"tcp_failures"`
		Timeouts     int     `json:"timeouts"`
		HTTPStatuses []int   `json:"http_statuses"`
	} `json:"unhealthy"`
}

// Passive is healthchecks.passive: the outcomes of proxied requests.
type Passive struct {
	Type    string `json:"type"`
	Healthy struct {
		Successes    int   `json:"successes"`
		HTTPStatuses []int `json:"http_statuses"`
	} `json:"healthy"`
	Unhealthy struct {
		HTTPFailures int   `json:"http_failures"`
		TCPFailures  int   `json:"tcp_failures"`
		Timeouts     int   `json:"timeouts"`
		HTTPStatuses []int `json:"http_statuses"`
	} `json:"unhealthy"`
}

// Kong's defaults (kong/db/schema/entities/upstreams.lua).
const defaultsJSON = `{"active":{"type":"http","http_path":"/","timeout":1,"concurrency":10,"https_verify_certificate":true,
"healthy":{"interval":0,"successes":0,"http_statuses":[200,302]},
"unhealthy":{"interval":0,"http_failures":0,"tcp_failures":0,"timeouts":0,"http_statuses":[429,404,500,501,502,503,504,505]}},
"passive":{"type":"http","healthy":{"successes":0,"http_statuses":[200,201,202,203,204,205,206,207,208,226,300,301,302,303,304,305,306,307,308]},
"unhealthy":{"http_failures":0,"tcp_failures":0,"timeouts":0,"http_statuses":[429,500,503]}},"threshold":0}`

// Parse decodes a healthchecks field over Kong's defaults (nil or null:
// the defaults, which check nothing). Explicit nulls keep the default.
func Parse(raw []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal([]byte(defaultsJSON), &c); err != nil {
		panic(err)
	}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("decode healthchecks: %w", err)
		}
	}
	if c.Active.HTTPPath == "" {
		c.Active.HTTPPath = "/"
	}
	if c.Active.Timeout <= 0 {
		c.Active.Timeout = 1
	}
	if c.Active.Concurrency <= 0 {
		c.Active.Concurrency = 10
	}
	return &c, nil
}

// ActiveOn reports whether targets are probed (an interval is set).
func (c *Config) ActiveOn() bool {
	return c.Active.Healthy.Interval > 0 || c.Active.Unhealthy.Interval > 0
}

// PassiveOn reports whether proxied traffic can change a target's health.
func (c *Config) PassiveOn() bool {
	u := c.Passive.Unhealthy
	return u.HTTPFailures > 0 || u.TCPFailures > 0 || u.Timeouts > 0 || c.Passive.Healthy.Successes > 0
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// thresholds are the counts that flip a target, from the active or the
// passive configuration.
type thresholds struct {
	successes, httpFailures, tcpFailures, timeouts int
	healthyStatuses, unhealthyStatuses             []int
}

func (c *Config) active() thresholds {
	a := c.Active
	return thresholds{a.Healthy.Successes, a.Unhealthy.HTTPFailures, a.Unhealthy.TCPFailures, a.Unhealthy.Timeouts, a.Healthy.HTTPStatuses, a.Unhealthy.HTTPStatuses}
}

func (c *Config) passive() thresholds {
	p := c.Passive
	return thresholds{p.Healthy.Successes, p.Unhealthy.HTTPFailures, p.Unhealthy.TCPFailures, p.Unhealthy.Timeouts, p.Healthy.HTTPStatuses, p.Unhealthy.HTTPStatuses}
}

// outcome classifies a status: success, an HTTP failure, or neither.
func (t *thresholds) outcome(status int) Outcome {
	switch {
	case slices.Contains(t.healthyStatuses, status):
		return Success
	case slices.Contains(t.unhealthyStatuses, status):
		return HTTPFailure
	}
	return Ignored
}
