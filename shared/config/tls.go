package config

import (
	"errors"
	"log/slog"
	"time"
)

// KafkaTLS is the Kafka client identity of a service: the test or
// production CA that signed the brokers' certificates, and the service's
// own certificate and key (PEM files). All three empty means PLAINTEXT
// (the default single local broker); a service embeds it in its Config,
// and the variables are the same in every service.
type KafkaTLS struct {
	CA   string `env:"KAFKA_TLS_CA"`   // PEM bundle of the CA(s) the brokers' certificates chain to
	Cert string `env:"KAFKA_TLS_CERT"` // this service's certificate; its CN is its Kafka principal
	Key  string `env:"KAFKA_TLS_KEY"`  // its private key (PKCS#8, PKCS#1 or SEC 1 PEM)

	// CheckEvery is how often a running service re-checks its ACLs on a
	// secured cluster (a refusal is then logged once and shown on /status).
	CheckEvery time.Duration `env:"KAFKA_ACCESS_CHECK_INTERVAL" envDefault:"10s"`
}

// Enabled reports whether any of the variables is set.
func (k KafkaTLS) Enabled() bool { return k.CA != "" || k.Cert != "" || k.Key != "" }

// Check reports a partial setting: mutual TLS needs all three files.
func (k KafkaTLS) Check() error {
	if !k.Enabled() || (k.CA != "" && k.Cert != "" && k.Key != "") {
		return nil
	}
	return errors.New("KAFKA_TLS_CA, KAFKA_TLS_CERT and KAFKA_TLS_KEY: set all three (mutual TLS) or none (PLAINTEXT)")
}

// LogValue logs the file names (never their contents).
func (k KafkaTLS) LogValue() slog.Value {
	if !k.Enabled() {
		return slog.StringValue("off")
	}
	return slog.GroupValue(slog.String("ca", k.CA), slog.String("cert", k.Cert), slog.String("key", k.Key), slog.Duration("access_check_interval", k.CheckEvery))
}
