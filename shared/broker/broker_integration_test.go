//go:build integration

package broker

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/deltaplane/deltaplane/shared/testsupport"
)

func uniqueTopic(t *testing.T, name string) string {
	t.Helper()
	topic := fmt.Sprintf("t-broker-%d.%s", time.Now().UnixNano(), name)
	t.Cleanup(func() {
		Client(testsupport.Kafka(t)).DeleteTopics(t.Context(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
	return topic
}

func TestEnsureTopicsCreatesThenAccepts(t *testing.T) {
	brokers := testsupport.Kafka(t)
	deltas, dlq := uniqueTopic(t, "dp.deltas"), uniqueTopic(t, "cp.changes.dlq")
	specs := []TopicSpec{Compacted(deltas, map[string]string{"min.cleanable.dirty.ratio": "0.2"}), Log(dlq)}
	for range 2 { // the second call finds them and verifies them
		if err := EnsureTopics(t.Context(), brokers, 30*time.Second, specs...); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := Client(brokers).DescribeConfigs(t.Context(), &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: deltas, ConfigNames: []string{"cleanup.policy", "min.cleanable.dirty.ratio", "segment.ms"},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range resp.Resources[0].ConfigEntries {
		got[e.ConfigName] = e.ConfigValue
	}
	if got["cleanup.policy"] != "compact" || got["min.cleanable.dirty.ratio"] != "0.2" || got["segment.ms"] != "3600000" {
		t.Fatalf("created with %v", got)
	}
}

func TestEnsureTopicsRefusesDrift(t *testing.T) {
	brokers := testsupport.Kafka(t)
	cases := []struct {
		name     string
		existing kafka.TopicConfig
		want     string
	}{
		{"cleanup policy delete", kafka.TopicConfig{NumPartitions: 1, ReplicationFactor: 1,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "delete"}}}, `cleanup.policy="delete"`},
		{"three partitions", kafka.TopicConfig{NumPartitions: 3, ReplicationFactor: 1,
			ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}}, "has 3 partitions"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			topic := uniqueTopic(t, "cp.changes")
			c.existing.Topic = topic
			resp, err := Client(brokers).CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{c.existing}})
			if err != nil || resp.Errors[topic] != nil {
				t.Fatalf("create drifted topic: %v %v", err, resp)
			}
			err = EnsureTopics(t.Context(), brokers, 30*time.Second, Compacted(topic, nil))
			if !errors.Is(err, ErrTopicMismatch) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("EnsureTopics = %v, want ErrTopicMismatch mentioning %q", err, c.want)
			}
		})
	}
}

// A topic with fewer copies than a service is configured to require is
// refused with the numbers; one that meets it is accepted. (On the shared
// single broker: the 3-broker case is in e2e's cluster tests.)
func TestEnsureTopicsRefusesTooFewReplicas(t *testing.T) {
	brokers := testsupport.Kafka(t)
	topic := uniqueTopic(t, "cp.changes")
	resp, err := Client(brokers).CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}}}})
	if err != nil || resp.Errors[topic] != nil {
		t.Fatalf("create a topic of one copy: %v %v", err, resp)
	}
	if err := EnsureTopics(t.Context(), brokers, 30*time.Second, Compacted(topic, nil).WithReplicas(1)); err != nil {
		t.Fatalf("one copy, one required: %v", err)
	}
	err = EnsureTopics(t.Context(), brokers, 30*time.Second, Compacted(topic, nil).WithReplicas(3))
	want := topic + " has replication factor 1, deltaplane is configured to require 3"
	if !errors.Is(err, ErrTopicMismatch) || !strings.Contains(err.Error(), want) {
		t.Fatalf("EnsureTopics = %v, want ErrTopicMismatch mentioning %q", err, want)
	}
}

// A topic created by a spec without the compaction lag (another service's,
// or an older deployment's) is accepted and its shortfall reported; one
// created with it, or with a longer lag, is not reported.
func TestDeviationsReportsAMissingCompactionLag(t *testing.T) {
	brokers := testsupport.Kafka(t)
	plain, held, longer := uniqueTopic(t, "dp.deltas"), uniqueTopic(t, "dp.deltas"), uniqueTopic(t, "dp.deltas")
	if err := EnsureTopics(t.Context(), brokers, 30*time.Second, Compacted(plain, nil), Compacted(held, nil).WithCompactionLag(time.Minute),
		Compacted(longer, nil).WithCompactionLag(time.Hour)); err != nil {
		t.Fatal(err)
	}
	specs := []TopicSpec{
		Compacted(plain, nil).WithCompactionLag(time.Minute),
		Compacted(held, nil).WithCompactionLag(time.Minute),
		Compacted(longer, nil).WithCompactionLag(time.Minute),
	}
	if err := EnsureTopics(t.Context(), brokers, 30*time.Second, specs...); err != nil {
		t.Fatalf("an existing topic without the lag was refused: %v", err)
	}
	got, err := Deviations(t.Context(), brokers, specs...)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		plain + ` has min.compaction.lag.ms="0", deltaplane advises "60000"`,
		plain + ` has message.timestamp.type="CreateTime", deltaplane advises "LogAppendTime"`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("deviations %q, want %q", got, want)
	}
}

// TestPartitionBounds: an empty topic, after writes, and a missing topic.
// (A first offset above 0 needs DeleteRecords or the cleaner; kafka-go's
// client offers no DeleteRecords.)
func TestPartitionBounds(t *testing.T) {
	brokers := testsupport.Kafka(t)
	topic := uniqueTopic(t, "bounds")
	if err := EnsureTopics(t.Context(), brokers, 30*time.Second, Log(topic)); err != nil {
		t.Fatal(err)
	}
	c := Client(brokers)
	bounds := func() (int64, int64) {
		t.Helper()
		first, end, err := PartitionBounds(t.Context(), c, topic)
		if err != nil {
			t.Fatal(err)
		}
		return first, end
	}
	if first, end := bounds(); first != 0 || end != 0 {
		t.Fatalf("empty topic: bounds %d..%d, want 0..0", first, end)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	if err := w.WriteMessages(t.Context(), kafka.Message{Value: []byte("a")}, kafka.Message{Value: []byte("b")}, kafka.Message{Value: []byte("c")}); err != nil {
		t.Fatal(err)
	}
	if first, end := bounds(); first != 0 || end != 3 {
		t.Fatalf("after 3 records: bounds %d..%d, want 0..3", first, end)
	}
	_, _, err := PartitionBounds(t.Context(), c, topic+".missing")
	if !errors.Is(err, kafka.UnknownTopicOrPartition) {
		t.Fatalf("missing topic: err = %v, want UnknownTopicOrPartition", err)
	}
}
