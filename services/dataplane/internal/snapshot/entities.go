package snapshot

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Service is a parsed service entity.
type Service struct {
	ID             string
	Name           string
	Protocol       string
	Host           string
	Port           int
	Path           string
	Retries        int
	ConnectTimeout time.Duration
	WriteTimeout   time.Duration
	ReadTimeout    time.Duration
	Enabled        bool
}

type serviceJSON struct {
	ID             string  `json:"id"`
	Name           *string `json:"name"`
	Protocol       string  `json:"protocol"`
	Host           string  `json:"host"`
	Port           int     `json:"port"`
	Path           *string `json:"path"`
	Retries        *int    `json:"retries"`
	ConnectTimeout *int    `json:"connect_timeout"`
	WriteTimeout   *int    `json:"write_timeout"`
	ReadTimeout    *int    `json:"read_timeout"`
	Enabled        *bool   `json:"enabled"`
}

func ms(v *int) time.Duration {
	if v == nil || *v <= 0 {
		return 60 * time.Second
	}
	return time.Duration(*v) * time.Millisecond
}

// ParseService decodes a service entity, filling Kong's defaults.
func ParseService(raw []byte) (*Service, error) {
	var j serviceJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("decode service: %w", err)
	}
	s := &Service{ID: j.ID, Protocol: j.Protocol, Host: j.Host, Port: j.Port, Retries: 5,
		ConnectTimeout: ms(j.ConnectTimeout), WriteTimeout: ms(j.WriteTimeout), ReadTimeout: ms(j.ReadTimeout), Enabled: true}
	if j.Name != nil {
		s.Name = *j.Name
	}
	if j.Path != nil {
		s.Path = *j.Path
	}
	if j.Retries != nil {
		s.Retries = *j.Retries
	}
	if j.Enabled != nil {
		s.Enabled = *j.Enabled
	}
	if s.Protocol == "" {
		s.Protocol = "http"
	}
	if s.Port == 0 {
		s.Port = 80
		if s.Protocol == "https" {
			s.Port = 443
		}
	}
	return s, nil
}

// Upstream is a parsed upstream with its targets.
type Upstream struct {
	ID         string
	Name       string
	HostHeader string
	// Healthchecks is the upstream's healthchecks field as configured,
	// nil when it checks nothing (internal/health reads it).
	Healthchecks json.RawMessage
	Targets      []*Target // weight > 0, sorted by id
	// TotalWeight is the sum of the targets' weights.
	TotalWeight int

	once  sync.Once
	sched []int
}

// Schedule is one round of smooth weighted round-robin over Targets (indexes
// into Targets), interleaved so that heavy targets do not take their share
// in one run; computed once per upstream value.
func (u *Upstream) Schedule() []int {
	u.once.Do(func() {
		if len(u.Targets) == 0 {
			return
		}
		g := 0
		for _, t := range u.Targets {
			g = gcd(g, t.Weight)
		}
		weights := make([]int, len(u.Targets))
		total := 0
		for i, t := range u.Targets {
			weights[i] = t.Weight / g
			total += weights[i]
		}
		if total > 10000 { // keep the round short: scale down, keeping every target
			scaled := 0
			for i := range weights {
				weights[i] = max(weights[i]*10000/total, 1)
				scaled += weights[i]
			}
			total = scaled
		}
		cur := make([]int, len(weights))
		u.sched = make([]int, 0, total)
		for range total {
			best := 0
			for i, w := range weights {
				cur[i] += w
				if cur[i] > cur[best] {
					best = i
				}
			}
			cur[best] -= total
			u.sched = append(u.sched, best)
		}
	})
	return u.sched
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// healthchecksOn reports whether an upstream's healthchecks field checks
// anything (Kong's rule: an active interval, or a passive threshold, is
// set); the Admin API stores Kong's whole default record on every
// upstream, which checks nothing and is not kept.
func healthchecksOn(raw json.RawMessage) bool {
	if len(raw) == 0 || string(raw) == "null" {
		return false
	}
	var j healthchecksJSON
	if json.Unmarshal(raw, &j) != nil {
		return true // internal/health reports it
	}
	return j.on()
}

// healthchecksJSON is what healthchecksOn reads of the field.
type healthchecksJSON struct {
	Active struct {
		Healthy   struct{ Interval float64 }
		Unhealthy struct{ Interval float64 }
	}
	Passive struct {
		Healthy   struct{ Successes int }
		Unhealthy struct {
			HTTPFailures int `json:"http_failures"`
			TCPFailures  int `json:"tcp_failures"`
			Timeouts     int
		}
	}
}

func (j *healthchecksJSON) on() bool {
	a, p := j.Active, j.Passive
	return a.Healthy.Interval > 0 || a.Unhealthy.Interval > 0 || p.Healthy.Successes > 0 ||
		p.Unhealthy.HTTPFailures > 0 || p.Unhealthy.TCPFailures > 0 || p.Unhealthy.Timeouts > 0
}

// upstreamFields is an upstream's fields with its healthchecks decoded in
// the same pass (decode's common case).
type upstreamFields struct {
	Name         string            `json:"name"`
	HostHeader   *string           `json:"host_header"`
	Healthchecks *healthchecksJSON `json:"healthchecks"`
}

type upstreamJSON struct {
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	HostHeader   *string         `json:"host_header"`
	Healthchecks json.RawMessage `json:"healthchecks"`
}

// Target is a parsed target.
type Target struct {
	ID         string
	UpstreamID string
	Target     string // host:port
	Weight     int
}

type targetJSON struct {
	ID       string `json:"id"`
	Target   string `json:"target"`
	Weight   *int   `json:"weight"`
	Upstream struct {
		ID string `json:"id"`
	} `json:"upstream"`
}

// ParseTarget decodes a target entity (port defaults to 8000, weight to 100).
func ParseTarget(raw []byte) (*Target, error) {
	var j targetJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("decode target: %w", err)
	}
	t := &Target{ID: j.ID, UpstreamID: j.Upstream.ID, Target: j.Target, Weight: 100}
	if j.Weight != nil {
		t.Weight = *j.Weight
	}
	if !hasPort(t.Target) {
		t.Target += ":8000"
	}
	return t, nil
}

func hasPort(hostport string) bool {
	if hostport == "" {
		return false
	}
	if hostport[0] == '[' {
		for i := len(hostport) - 1; i >= 0; i-- {
			if hostport[i] == ']' {
				return i+1 < len(hostport) && hostport[i+1] == ':'
			}
		}
		return false
	}
	for i := 0; i < len(hostport); i++ {
		if hostport[i] == ':' {
			return true
		}
	}
	return false
}

// Plugin is a parsed plugin entity; Config stays raw for the plugin to decode.
type Plugin struct {
	ID         string
	Name       string
	Config     json.RawMessage
	RouteID    string
	ServiceID  string
	ConsumerID string
	Enabled    bool
}

type ref struct {
	ID string `json:"id"`
}

type pluginJSON struct {
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	Config   json.RawMessage `json:"config"`
	Route    *ref            `json:"route"`
	Service  *ref            `json:"service"`
	Consumer *ref            `json:"consumer"`
	Enabled  *bool           `json:"enabled"`
}

// ParsePlugin decodes a plugin entity.
func ParsePlugin(raw []byte) (*Plugin, error) {
	var j pluginJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("decode plugin: %w", err)
	}
	p := &Plugin{ID: j.ID, Name: j.Name, Config: j.Config, Enabled: j.Enabled == nil || *j.Enabled}
	if j.Route != nil {
		p.RouteID = j.Route.ID
	}
	if j.Service != nil {
		p.ServiceID = j.Service.ID
	}
	if j.Consumer != nil {
		p.ConsumerID = j.Consumer.ID
	}
	return p, nil
}

// Consumer is a parsed consumer.
type Consumer struct {
	ID       string `json:"id"`
	Username string `json:"username"`
	CustomID string `json:"custom_id"`
}

// KeyAuthCredential is a parsed key-auth credential.
type KeyAuthCredential struct {
	ID         string
	Key        string
	ConsumerID string
}

type keyAuthJSON struct {
	ID       string `json:"id"`
	Key      string `json:"key"`
	Consumer ref    `json:"consumer"`
}

// Certificate is a parsed certificate entity: PEM certificate (chain) and
// key, and the alternate pair (Kong's cert_alt/key_alt, e.g. ECDSA beside
// RSA). The key pairs are parsed on first use, once per entity value.
type Certificate struct {
	ID      string
	Cert    string
	Key     string
	CertAlt string
	KeyAlt  string

	once  sync.Once
	pairs []tls.Certificate
	err   error
}

// KeyPairs returns the certificate's key pairs (the main one first, then
// the alternate one when set), parsed once.
func (c *Certificate) KeyPairs() ([]tls.Certificate, error) {
	c.once.Do(func() {
		p, err := tls.X509KeyPair([]byte(c.Cert), []byte(c.Key))
		if err != nil {
			c.err = fmt.Errorf("certificate %s: %w", c.ID, err)
			return
		}
		c.pairs = append(c.pairs, p)
		if c.CertAlt != "" && c.KeyAlt != "" {
			alt, err := tls.X509KeyPair([]byte(c.CertAlt), []byte(c.KeyAlt))
			if err != nil {
				c.err = fmt.Errorf("certificate %s (alternate): %w", c.ID, err)
				return
			}
			c.pairs = append(c.pairs, alt)
		}
	})
	return c.pairs, c.err
}

type certificateJSON struct {
	ID      string  `json:"id"`
	Cert    string  `json:"cert"`
	Key     string  `json:"key"`
	CertAlt *string `json:"cert_alt"`
	KeyAlt  *string `json:"key_alt"`
}

// ParseCertificate decodes a certificate entity (the key pairs are parsed
// on first use: KeyPairs).
func ParseCertificate(raw []byte) (*Certificate, error) {
	var j certificateJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("decode certificate: %w", err)
	}
	c := &Certificate{ID: j.ID, Cert: j.Cert, Key: j.Key}
	if j.CertAlt != nil {
		c.CertAlt = *j.CertAlt
	}
	if j.KeyAlt != nil {
		c.KeyAlt = *j.KeyAlt
	}
	return c, nil
}

// SNI is a parsed SNI entity: a server name (lower case; "*.example.com",
// "example.*" or "*" for wildcards) and its certificate.
type SNI struct {
	ID            string
	Name          string
	CertificateID string
}

type sniJSON struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Certificate ref    `json:"certificate"`
}

// ParseSNI decodes an SNI entity.
func ParseSNI(raw []byte) (*SNI, error) {
	var j sniJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("decode sni: %w", err)
	}
	if j.Name == "" {
		return nil, fmt.Errorf("sni without name")
	}
	return &SNI{ID: j.ID, Name: strings.ToLower(j.Name), CertificateID: j.Certificate.ID}, nil
}
