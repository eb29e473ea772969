// Package attest makes a data plane's heartbeat unforgeable by another data
// plane. Kafka's ACLs grant WRITE on a whole topic, not on a key: every
// data plane may write dp.status, so any one of them could write a record
// under another's node id. A data plane therefore signs each heartbeat
// with the private key of its own certificate (the one it authenticates to
// Kafka with) and ships the certificate and the signature in record
// headers; admin-api accepts a heartbeat only when the certificate chains
// to the CA, was issued for client authentication, its CN is the
// principal of the record's key (dataplane-<node id>), and the signature
// over the key and value verifies with the certificate's public key.
//
// What it does not stop: a data plane replaying its own older heartbeats,
// and a replay of another node's signed record, which a data plane cannot
// read (it has no READ on dp.status and the records travel over TLS).
package attest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/segmentio/kafka-go"
)

// Record headers of a signed heartbeat.
const (
	HeaderCert = "dp-cert" // DER of the signer's certificate
	HeaderSig  = "dp-sig"  // signature over Message(key, value)
)

// Message is what is signed: the key's length (8 bytes, big endian), the
// key, then the value; the length keeps key and value from sliding.
func Message(key, value []byte) []byte {
	m := make([]byte, 0, 8+len(key)+len(value))
	m = binary.BigEndian.AppendUint64(m, uint64(len(key)))
	m = append(m, key...)
	return append(m, value...)
}

// Signer signs heartbeats with a certificate's key.
type Signer struct {
	der  []byte
	key  crypto.Signer
	algo x509.SignatureAlgorithm
	cn   string
}

// NewSigner loads a PEM certificate and its key (the data plane's
// KAFKA_TLS_CERT and KAFKA_TLS_KEY).
func NewSigner(certFile, keyFile string) (*Signer, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("heartbeat signer: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("heartbeat signer: %w", err)
	}
	key, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("heartbeat signer: key cannot sign")
	}
	s := &Signer{der: pair.Certificate[0], key: key, cn: leaf.Subject.CommonName}
	switch key.(type) {
	case *ecdsa.PrivateKey:
		s.algo = x509.ECDSAWithSHA256
	case *rsa.PrivateKey:
		s.algo = x509.SHA256WithRSA
	case ed25519.PrivateKey:
		s.algo = x509.PureEd25519
	default:
		return nil, fmt.Errorf("heartbeat signer: unsupported key type %T", key)
	}
	return s, nil
}

// CommonName is the CN of the signer's certificate.
func (s *Signer) CommonName() string { return s.cn }

// Sign returns the headers to attach to the record (key, value).
func (s *Signer) Sign(key, value []byte) ([]kafka.Header, error) {
	msg := Message(key, value)
	var sig []byte
	var err error
	if s.algo == x509.PureEd25519 {
		sig, err = s.key.Sign(rand.Reader, msg, crypto.Hash(0))
	} else {
		d := sha256.Sum256(msg)
		sig, err = s.key.Sign(rand.Reader, d[:], crypto.SHA256)
	}
	if err != nil {
		return nil, fmt.Errorf("sign heartbeat: %w", err)
	}
	return []kafka.Header{{Key: HeaderCert, Value: s.der}, {Key: HeaderSig, Value: sig}}, nil
}

// Verifier checks signed heartbeats against a CA.
type Verifier struct {
	roots     *x509.CertPool
	principal func(key string) string
}

// NewVerifier trusts the CA certificates in the PEM file caFile; principal
// maps a record key to the CN its signer must have.
func NewVerifier(caFile string, principal func(key string) string) (*Verifier, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("heartbeat verifier: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("heartbeat verifier: no certificate in %s", caFile)
	}
	return &Verifier{roots: roots, principal: principal}, nil
}

// Errors of Verify, wrapped with the detail.
var (
	ErrUnsigned  = errors.New("heartbeat not signed")
	ErrChain     = errors.New("heartbeat certificate not issued by the trusted CA")
	ErrPrincipal = errors.New("heartbeat certificate is another principal's")
	ErrSignature = errors.New("heartbeat signature does not verify")
)

// Verify checks the record (key, value, headers) at time now.
func (v *Verifier) Verify(key, value []byte, headers []kafka.Header, now time.Time) error {
	var der, sig []byte
	for _, h := range headers {
		switch h.Key {
		case HeaderCert:
			der = h.Value
		case HeaderSig:
			sig = h.Value
		}
	}
	if der == nil || sig == nil {
		return ErrUnsigned
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrChain, err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: v.roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("%w: %v", ErrChain, err)
	}
	if want := v.principal(string(key)); cert.Subject.CommonName != want {
		return fmt.Errorf("%w: key %q needs CN=%s, signed by CN=%s", ErrPrincipal, key, want, cert.Subject.CommonName)
	}
	var algo x509.SignatureAlgorithm
	switch cert.PublicKey.(type) {
	case *ecdsa.PublicKey:
		algo = x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		algo = x509.SHA256WithRSA
	case ed25519.PublicKey:
		algo = x509.PureEd25519
	}
	if err := cert.CheckSignature(algo, Message(key, value), sig); err != nil {
		return fmt.Errorf("%w: %v", ErrSignature, err)
	}
	return nil
}
