//go:build e2e

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/testsupport"
)

// selfSigned returns a PEM certificate and key for names, with cn as its
// common name.
func selfSigned(t *testing.T, cn string, names ...string) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
}

// servedName is the common name of the certificate the data plane's TLS
// listener serves a real TLS client asking for serverName.
func servedName(addr, serverName string) (string, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// TestCertificatesAndHealthThroughAdminAPI: a certificate and its SNI
// created through the Admin API reach a data plane and are served by SNI
// on its TLS listener (a wildcard SNI added later from the next
// handshake on), an https-only route with snis answers over TLS; and an
// upstream's health checks configured through the Admin API take a failing
// target out of the balancer, as the data plane's /status/upstreams shows.
func TestCertificatesAndHealthThroughAdminAPI(t *testing.T) {
	s := newSystem(t)
	dp := s.startDataplane("dp1")
	admin := s.Admin

	if name, err := servedName(dp.ProxyTLS, "api.e2e.test"); err != nil || name != "localhost" {
		t.Fatalf("before any certificate: %q %v, want the default certificate", name, err)
	}
	cert, key := selfSigned(t, "e2e-api", "api.e2e.test")
	certID := mustDo(t, 201, "POST", admin+"/certificates", map[string]any{"cert": cert, "key": key})["id"].(string)
	mustDo(t, 201, "POST", admin+"/snis", map[string]any{"name": "api.e2e.test", "certificate": map[string]any{"id": certID}})
	up := upstream(t)
	svc := mustDo(t, 201, "POST", admin+"/services", map[string]any{"name": "tls-echo", "url": up.URL})["id"].(string)
	mustDo(t, 201, "POST", admin+"/services/"+svc+"/routes", map[string]any{"name": "tls-only", "paths": []string{"/secure"},
		"protocols": []string{"https"}, "snis": []string{"api.e2e.test"}})

	testsupport.Eventually(t, propagation, func() error {
		name, err := servedName(dp.ProxyTLS, "api.e2e.test")
		if err == nil && name != "e2e-api" {
			err = fmt.Errorf("served %q", name)
		}
		return err
	})
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{ServerName: "api.e2e.test", InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	testsupport.Eventually(t, propagation, func() error {
		resp, err := client.Get("https://" + dp.ProxyTLS + "/secure/x")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"path":"/x"`) || resp.Header.Get("Via") == "" {
			return fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		return nil
	})
	if r := do(t, "GET", dp.Proxy+"/secure/x", nil); r.status != 426 {
		t.Fatalf("plain HTTP to the https-only route: %d %s", r.status, r.body)
	}

	wcert, wkey := selfSigned(t, "e2e-wild", "*.wild.e2e.test")
	wid := mustDo(t, 201, "POST", admin+"/certificates", map[string]any{"cert": wcert, "key": wkey})["id"].(string)
	mustDo(t, 201, "POST", admin+"/snis", map[string]any{"name": "*.wild.e2e.test", "certificate": map[string]any{"id": wid}})
	testsupport.Eventually(t, propagation, func() error {
		name, err := servedName(dp.ProxyTLS, "any.wild.e2e.test")
		if err == nil && name != "e2e-wild" {
			err = fmt.Errorf("served %q", name)
		}
		return err
	})

	// Health checks: target b fails its probes, then recovers.
	var failing atomic.Bool
	mk := func(name string, fail *atomic.Bool) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if fail != nil && fail.Load() {
				w.WriteHeader(500)
			}
			io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	a, b := mk("A", nil), mk("B", &failing)
	upID := mustDo(t, 201, "POST", admin+"/upstreams", map[string]any{"name": "pool.e2e.internal", "healthchecks": map[string]any{
		"active": map[string]any{"http_path": "/health", "healthy": map[string]any{"interval": 0.1, "successes": 1},
			"unhealthy": map[string]any{"interval": 0.1, "http_failures": 1}}}})["id"].(string)
	mustDo(t, 201, "POST", admin+"/upstreams/"+upID+"/targets", map[string]any{"target": a})
	mustDo(t, 201, "POST", admin+"/upstreams/"+upID+"/targets", map[string]any{"target": b})
	pool := mustDo(t, 201, "POST", admin+"/services", map[string]any{"name": "pool", "host": "pool.e2e.internal", "port": 80})["id"].(string)
	mustDo(t, 201, "POST", admin+"/services/"+pool+"/routes", map[string]any{"name": "pool", "paths": []string{"/pool"}})

	targetHealth := func(addr string) string {
		var body struct {
			Data []struct {
				Name    string `json:"name"`
				Targets []struct{ Target, Health string }
			} `json:"data"`
		}
		if err := json.Unmarshal(do(t, "GET", dp.Status+"/status/upstreams", nil).body, &body); err != nil {
			return err.Error()
		}
		for _, u := range body.Data {
			for _, tg := range u.Targets {
				if u.Name == "pool.e2e.internal" && tg.Target == addr {
					return tg.Health
				}
			}
		}
		return "absent"
	}
	want := func(addr, health string) func() error {
		return func() error {
			if h := targetHealth(addr); h != health {
				return fmt.Errorf("%s is %s, want %s", addr, h, health)
			}
			return nil
		}
	}
	testsupport.Eventually(t, propagation, want(b, "HEALTHY"))
	failing.Store(true)
	testsupport.Eventually(t, propagation, want(b, "UNHEALTHY"))
	for range 6 {
		if r := do(t, "GET", dp.Proxy+"/pool", nil); r.status != 200 || string(r.body) != "A" {
			t.Fatalf("b unhealthy: %d %s", r.status, r.body)
		}
	}
	failing.Store(false)
	testsupport.Eventually(t, propagation, want(b, "HEALTHY"))
	testsupport.Eventually(t, propagation, func() error {
		if r := do(t, "GET", dp.Proxy+"/pool", nil); string(r.body) != "B" {
			return fmt.Errorf("%d %s", r.status, r.body)
		}
		return nil
	})
}
