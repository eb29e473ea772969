package broker

import "github.com/segmentio/kafka-go"

// Transport returns a kafka-go transport that keeps the metadata of topics
// only, with the settings of the process's default transport (TLS, see
// Secure). kafka-go's default transport refreshes the metadata of every
// topic of the cluster every few seconds (a random time under its 6 s
// MetadataTTL): a process that talks to a few topics of a cluster of many
// pays for all of them, and so does the broker, once per process. Requests
// about other topics fail as unknown: use it only for topics. Call
// CloseIdleConnections when done (it stops the refresh).
func Transport(topics ...string) *kafka.Transport {
	t := &kafka.Transport{MetadataTopics: topics}
	if d, ok := kafka.DefaultTransport.(*kafka.Transport); ok {
		t.Dial, t.DialTimeout, t.IdleTimeout, t.MetadataTTL = d.Dial, d.DialTimeout, d.IdleTimeout, d.MetadataTTL
		t.ClientID, t.TLS, t.SASL, t.Resolver, t.Context = d.ClientID, d.TLS, d.SASL, d.Resolver, d.Context
	}
	return t
}
