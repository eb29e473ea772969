// Package tlsconf serves the proxy's TLS listener: the certificate of each
// handshake is chosen by the client's server name (SNI) from the
// certificates and snis entities of the configuration live at that
// moment, so a certificate or SNI applied by a delta is served from the
// next handshake on, without a restart.
package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/deltaplane/deltaplane/services/dataplane/internal/snapshot"
)

// Selector picks the certificate of a TLS handshake.
type Selector struct {
	log      *slog.Logger
	current  func() *snapshot.Snapshot
	fallback *tls.Certificate
	warned   sync.Map // *snapshot.Certificate -> struct{}: unusable pairs logged once
}

// New returns a selector reading the live configuration from current;
// fallback is served when no SNI matches (Kong's default certificate).
func New(log *slog.Logger, current func() *snapshot.Snapshot, fallback tls.Certificate) *Selector {
	return &Selector{log: log.With("component", "tls"), current: current, fallback: &fallback}
}

// GetCertificate is tls.Config.GetCertificate: the certificate of the SNI
// matching the server name as Kong matches it (exact, "*.<rest>",
// "<rest>.*", then the SNI "*"), else the fallback. Of a certificate with
// an alternate pair (cert_alt), the first pair the client supports.
func (s *Selector) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c, ok := s.current().CertificateFor(hello.ServerName)
	if !ok {
		return s.fallback, nil
	}
	pairs, err := c.KeyPairs()
	if err != nil {
		if _, seen := s.warned.LoadOrStore(c, struct{}{}); !seen {
			s.log.Warn("certificate unusable, serving the default one", "server_name", hello.ServerName, "err", err)
		}
		return s.fallback, nil
	}
	for i := range pairs {
		if hello.SupportsCertificate(&pairs[i]) == nil {
			return &pairs[i], nil
		}
	}
	return &pairs[0], nil
}

// Config is the listener's TLS configuration (TLS 1.2 and later; HTTP/2
// and HTTP/1.1 offered, as Kong's 8443 listener).
func (s *Selector) Config() *tls.Config {
	return &tls.Config{GetCertificate: s.GetCertificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
}

// Default returns the listener's default certificate: the PEM files when
// both are given (Kong's ssl_cert, ssl_cert_key), else a self-signed
// certificate for "localhost" made now (Kong generates one too).
func Default(certFile, keyFile string) (tls.Certificate, error) {
	if certFile != "" || keyFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("default certificate: %w", err)
		}
		return c, nil
	}
	return SelfSigned("localhost")
}

// SelfSigned makes a self-signed ECDSA P-256 certificate for host, valid
// for ten years.
func SelfSigned(host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host, Organization: []string{"deltaplane default certificate"}},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
