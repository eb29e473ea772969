package broker

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/deltaplane/deltaplane/shared/config"
	"github.com/segmentio/kafka-go"
)

// LoadTLS builds a mutual-TLS client configuration from PEM files: the
// brokers must present a certificate chaining to caFile, and the service
// presents certFile/keyFile, whose subject CN the brokers map to its
// principal (User:<CN>, see deployments/local/kafka-secure.sh).
func LoadTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("kafka tls ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("kafka tls ca: no certificate in %s", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("kafka tls cert: %w", err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Secure makes every Kafka connection of this process use mutual TLS when
// k is set, and does nothing when it is not (PLAINTEXT). It sets kafka-go's
// process-wide defaults, kafka.DefaultDialer (readers, consumer groups)
// and kafka.DefaultTransport (writers, Client), which every reader, writer
// and client of ours uses when it names no Dialer or Transport of its own:
// one switch in run() instead of a TLS field threaded through every
// package. The returned restore puts the previous defaults back (tests that
// run a service in-process call it; run() defers it).
func Secure(k config.KafkaTLS) (restore func(), err error) {
	if !k.Enabled() {
		return func() {}, nil
	}
	if err := k.Check(); err != nil {
		return nil, err
	}
	cfg, err := LoadTLS(k.CA, k.Cert, k.Key)
	if err != nil {
		return nil, err
	}
	prevDialer, prevTransport := kafka.DefaultDialer, kafka.DefaultTransport
	kafka.DefaultDialer = &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: cfg}
	kafka.DefaultTransport = &kafka.Transport{
		Dial: (&net.Dialer{Timeout: 3 * time.Second, DualStack: true}).DialContext,
		TLS:  cfg,
	}
	return func() { kafka.DefaultDialer, kafka.DefaultTransport = prevDialer, prevTransport }, nil
}

// Dialer returns a copy of the process's default dialer (with its TLS
// settings) carrying clientID, for a reader that names its client.
func Dialer(clientID string) *kafka.Dialer {
	d := *kafka.DefaultDialer
	d.ClientID = clientID
	return &d
}
