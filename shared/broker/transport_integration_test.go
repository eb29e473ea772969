//go:build integration

package broker

import (
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/shared/testsupport"
)

// TestTransportKeepsItsTopicsMetadataOnly: a client on Transport(a) knows
// the metadata of a (partitions, offsets) and nothing of b, another topic
// of the cluster, which the default transport's metadata includes.
func TestTransportKeepsItsTopicsMetadataOnly(t *testing.T) {
	brokers := testsupport.Kafka(t)
	a, b := uniqueTopic(t, "a"), uniqueTopic(t, "b")
	if err := EnsureTopics(t.Context(), brokers, 30*time.Second, Compacted(a, nil), Compacted(b, nil)); err != nil {
		t.Fatal(err)
	}
	tr := Transport(a)
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Transport: tr, Timeout: 10 * time.Second}
	var names []string
	err := Retry(t.Context(), 30*time.Second, func() error {
		resp, err := c.Metadata(t.Context(), &kafka.MetadataRequest{})
		if err != nil {
			return err
		}
		names = names[:0]
		for _, tp := range resp.Topics {
			names = append(names, tp.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != a {
		t.Fatalf("metadata of %d topics (%.5v), want only %s", len(names), names, a)
	}
	if _, _, err := PartitionBounds(t.Context(), c, a); err != nil {
		t.Fatalf("bounds of %s: %v", a, err)
	}
}
