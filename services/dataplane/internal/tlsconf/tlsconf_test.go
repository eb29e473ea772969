package tlsconf_test

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
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/proxy"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/tlsconf"
)

// ca signs test certificates.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t testing.TB) *ca {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &ca{cert: c, key: key, pool: pool}
}

var serial atomic.Int64

// leaf returns a certificate entity (Admin API JSON) for the names, with
// the common name cn to tell certificates apart.
func (a *ca) leaf(t testing.TB, id, cn string, names ...string) string {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial.Add(1) + 1), Subject: pkix.Name{CommonName: cn}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	b, _ := json.Marshal(map[string]string{
		"id":   id,
		"cert": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		"key":  string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})),
	})
	return string(b)
}

func sni(id, name, cert string) string {
	return fmt.Sprintf(`{"id":%q,"name":%q,"certificate":{"id":%q}}`, id, name, cert)
}

// live is a configuration that tests change by applying writes, as the
// consumer does.
type live struct {
	p atomic.Pointer[snapshot.Snapshot]
}

func (l *live) get() *snapshot.Snapshot { return l.p.Load() }

func (l *live) apply(t testing.TB, kv ...string) {
	cur := l.get()
	if cur == nil {
		cur = snapshot.Empty()
	}
	var w []snapshot.Write
	for i := 0; i < len(kv); i += 2 {
		var v []byte
		if kv[i+1] != "" {
			v = []byte(kv[i+1])
		}
		w = append(w, snapshot.Write{Key: kv[i], Value: v})
	}
	next, _, errs := cur.Apply(cur.Version+1, w)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	l.p.Store(next)
}

// serveTLS serves h on a TLS listener whose certificates the selector picks.
func serveTLS(t testing.TB, sel *tlsconf.Selector, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: sel.Config(), ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// served is the common name of the certificate a real TLS client is
// served for serverName (verified against roots when not nil).
func served(t testing.TB, addr, serverName string, roots *x509.CertPool) string {
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: serverName, RootCAs: roots, InsecureSkipVerify: roots == nil})
	if err != nil {
		t.Fatalf("handshake for %q: %v", serverName, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

var discard = slog.New(slog.DiscardHandler)

// TestSelectBySNI: the certificate is chosen by the client's server name
// as Kong chooses it (exact name, "*.<rest>", "<rest>.*", the SNI "*",
// then the default certificate), and certificates and SNIs applied later
// are served from the next handshake on.
func TestSelectBySNI(t *testing.T) {
	ca := newCA(t)
	var cfg live
	cfg.apply(t,
		"certificates/exact", ca.leaf(t, "exact", "exact", "api.example.com"),
		"certificates/wild", ca.leaf(t, "wild", "wild", "*.example.com"),
		"certificates/suffix", ca.leaf(t, "suffix", "suffix", "shop.example.org"),
		"certificates/any", ca.leaf(t, "any", "any", "fallback.test"),
		"snis/1", sni("1", "api.example.com", "exact"),
		"snis/2", sni("2", "*.example.com", "wild"),
		"snis/3", sni("3", "shop.*", "suffix"),
		"snis/4", sni("4", "*", "any"),
	)
	def, err := tlsconf.SelfSigned("localhost")
	if err != nil {
		t.Fatal(err)
	}
	sel := tlsconf.New(discard, cfg.get, def)
	addr := serveTLS(t, sel, http.NotFoundHandler())

	for _, c := range []struct{ name, want string }{
		{"api.example.com", "exact"},
		{"API.Example.COM", "exact"},
		{"www.example.com", "wild"},
		{"a.b.example.com", "any"}, // "*.b.example.com" and "a.b.example.*" are not configured
		{"shop.example", "suffix"},
		{"elsewhere.net", "any"},
		{"", "any"}, // no SNI sent (an IP address)
	} {
		if got := served(t, addr, c.name, nil); got != c.want {
			t.Errorf("server name %q: served %q, want %q", c.name, got, c.want)
		}
	}
	// Verified by a client that trusts the CA.
	if got := served(t, addr, "www.example.com", ca.pool); got != "wild" {
		t.Fatalf("verified: %q", got)
	}

	// Without the "*" SNI, unknown names get the default certificate.
	cfg.apply(t, "snis/4", "")
	if got := served(t, addr, "elsewhere.net", nil); got != "localhost" {
		t.Fatalf("after deleting the * SNI: served %q, want the default certificate", got)
	}
	// A certificate and SNI applied by a delta: the next handshake.
	if got := served(t, addr, "new.example.net", nil); got != "localhost" {
		t.Fatalf("before: %q", got)
	}
	cfg.apply(t, "certificates/new", ca.leaf(t, "new", "new", "new.example.net"), "snis/5", sni("5", "new.example.net", "new"))
	if got := served(t, addr, "new.example.net", ca.pool); got != "new" {
		t.Fatalf("after the delta: served %q, want new", got)
	}
	// An SNI moved to another certificate, then its certificate replaced.
	cfg.apply(t, "snis/5", sni("5", "new.example.net", "exact"))
	if got := served(t, addr, "new.example.net", nil); got != "exact" {
		t.Fatalf("after moving the SNI: %q", got)
	}
	cfg.apply(t, "certificates/exact", ca.leaf(t, "exact", "exact-renewed", "api.example.com", "new.example.net"))
	if got := served(t, addr, "api.example.com", ca.pool); got != "exact-renewed" {
		t.Fatalf("after renewing: %q", got)
	}
	// A certificate whose key does not match: the default one, no failure.
	bad := strings.Replace(ca.leaf(t, "bad", "bad", "bad.test"), `"key":`, `"key_unused":`, 1)
	cfg.apply(t, "certificates/bad", strings.Replace(bad, `"key_unused":`, `"key":"garbage","x":`, 1), "snis/6", sni("6", "bad.test", "bad"))
	if got := served(t, addr, "bad.test", nil); got != "localhost" {
		t.Fatalf("bad pair: %q", got)
	}
}

// TestRouteSNIsAndHTTPSRedirect runs the proxy on a plain and a TLS
// listener: routes' snis select the route on TLS connections (a real
// crypto/tls client sends the server name), and an https-only route hit
// over plain HTTP answers with its https_redirect_status_code as Kong
// does (426 with Upgrade, or a redirect to https).
func TestRouteSNIsAndHTTPSRedirect(t *testing.T) {
	mk := func(name string) (string, string) {
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) }))
		t.Cleanup(up.Close)
		h, p, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "http://"))
		return h, p
	}
	ah, ap := mk("A")
	bh, bp := mk("B")
	ca := newCA(t)
	var cfg live
	cfg.apply(t,
		"certificates/c", ca.leaf(t, "c", "c", "*.example.com"),
		"snis/1", sni("1", "*.example.com", "c"),
		"services/a", fmt.Sprintf(`{"id":"a","host":%q,"port":%s}`, ah, ap),
		"services/b", fmt.Sprintf(`{"id":"b","host":%q,"port":%s}`, bh, bp),
		"routes/a", `{"id":"a","paths":["/x"],"protocols":["https"],"snis":["a.example.com"],"service":{"id":"a"}}`,
		"routes/b", `{"id":"b","paths":["/x"],"protocols":["https"],"snis":["b.example.com"],"https_redirect_status_code":308,"service":{"id":"b"}}`,
		"routes/any", `{"id":"any","paths":["/any"],"protocols":["http","https"],"service":{"id":"a"}}`,
	)
	def, _ := tlsconf.SelfSigned("localhost")
	px := proxy.New(discard, cfg.get, nil)
	tlsAddr := serveTLS(t, tlsconf.New(discard, cfg.get, def), px)
	plain := httptest.NewServer(px)
	t.Cleanup(plain.Close)

	get := func(t *testing.T, url, serverName string) (*http.Response, string) {
		client := &http.Client{
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{ServerName: serverName, RootCAs: ca.pool}},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		defer client.CloseIdleConnections()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, strings.TrimSpace(string(b))
	}
	for _, c := range []struct {
		name, url, sni string
		code           int
		body           string
	}{
		{"sni a", "https://" + tlsAddr + "/x", "a.example.com", 200, "A"},
		{"sni b", "https://" + tlsAddr + "/x", "b.example.com", 200, "B"},
		{"sni c", "https://" + tlsAddr + "/x", "c.example.com", 404, `{"message":"no Route matched with those values"}`},
		{"no snis over tls", "https://" + tlsAddr + "/any", "c.example.com", 200, "A"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := get(t, c.url, c.sni)
			if resp.StatusCode != c.code || body != c.body {
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, body, c.code, c.body)
			}
			if resp.TLS == nil || resp.TLS.PeerCertificates[0].Subject.CommonName != "c" {
				t.Fatalf("not served the wildcard certificate: %+v", resp.TLS)
			}
		})
	}
	// Plain HTTP to the https-only routes: both match (snis are not
	// checked without TLS); the older route (a, 426) wins by creation
	// order, so route b is reached by its own path in a second config.
	t.Run("http 426", func(t *testing.T) {
		resp, body := get(t, plain.URL+"/x", "")
		if resp.StatusCode != 426 || body != `{"message":"Please use HTTPS protocol"}` || resp.Header.Get("Upgrade") != "TLS/1.2, HTTP/1.1" {
			t.Fatalf("%d %q %v", resp.StatusCode, body, resp.Header)
		}
	})
	t.Run("http 308", func(t *testing.T) {
		cfg.apply(t, "routes/a", "")
		req, _ := http.NewRequest("GET", plain.URL+"/x/y?q=1", nil)
		req.Host = "b.example.com:8000"
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 308 || resp.Header.Get("Location") != "https://b.example.com/x/y?q=1" {
			t.Fatalf("%d Location %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}
