// Package broker holds what every deltaplane service does with Kafka beside
// its real work: parse the broker list, wait for the cluster with bounded
// backoff, create or verify the topics it relies on (compacted tables, and
// delete-policy logs such as the quarantine topics), and read a topic's
// partition bounds (PartitionBounds).
package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/segmentio/kafka-go"
)

// Brokers splits a comma-separated broker list ("127.0.0.1:9092,...").
func Brokers(list string) []string {
	var out []string
	for _, b := range strings.Split(list, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// TopicSpec is what a service requires of a topic.
type TopicSpec struct {
	Name       string
	Partitions int
	// Configs are set on creation; the ones in Verify must also match on an
	// existing topic (for example cleanup.policy).
	Configs map[string]string
	Verify  []string
	// Advise lists configs (in Configs) that an existing topic should have
	// but may lack without being refused: Deviations reports them. A
	// numeric value is met by a larger one.
	Advise []string
	// Replicas is the replication factor the service is configured to
	// require (0 or 1: none). A topic is created with at least this many
	// copies, and with three once the cluster has three brokers; an
	// existing topic with fewer is an ErrTopicMismatch, and so is one of
	// three or more copies whose min.insync.replicas is below a majority.
	Replicas int
}

// WithReplicas returns the spec requiring a replication factor of at
// least n (see TopicSpec.Replicas).
func (s TopicSpec) WithReplicas(n int) TopicSpec {
	s.Replicas = n
	return s
}

// replication is the replication factor and min.insync.replicas ("" for
// the broker's default) a topic is created with on a cluster of brokers:
// what is required, and three copies once there are three brokers, with
// a majority of them in sync before a write with acks=all is acknowledged
// (two of three: one broker may be down without stopping writes, and an
// acknowledged write survives the loss of any one).
func replication(required, brokers int) (factor int, minInsync string) {
	factor = max(required, min(3, brokers), 1)
	if factor >= 3 {
		minInsync = strconv.Itoa(factor/2 + 1)
	}
	return factor, minInsync
}

// DefaultCompactionLag is how long dp.deltas keeps a record from the
// cleaner (see WithCompactionLag).
const DefaultCompactionLag = 10 * time.Minute

// WithCompactionLag returns the spec with min.compaction.lag.ms = lag and
// broker append timestamps (message.timestamp.type=LogAppendTime): the
// cleaner leaves every record alone until lag after the broker appended
// it, whatever the writer's clock or a pause between its stamp and its
// send. On dp.deltas this is the time the sync-gateway has to repair a
// late write of a fenced-out instance before compaction could make the
// late copy the only record of its keys. Both are advised, not verified:
// another service may create the topic with a spec without them.
func (s TopicSpec) WithCompactionLag(lag time.Duration) TopicSpec {
	cfg := make(map[string]string, len(s.Configs)+2)
	for k, v := range s.Configs {
		cfg[k] = v
	}
	cfg["min.compaction.lag.ms"] = strconv.FormatInt(lag.Milliseconds(), 10)
	cfg["message.timestamp.type"] = "LogAppendTime"
	s.Configs = cfg
	s.Advise = append(slices.Clip(s.Advise), "min.compaction.lag.ms", "message.timestamp.type")
	return s
}

// Compacted is the spec of a one-partition compacted config topic, created
// with a segment roll of one hour and a low dirty ratio (extra overrides
// them): Kafka never compacts the active segment, so with its defaults
// (7 days, 0.5) a new data plane reading the topic from the start would read
// days of superseded history; this bounds it to about an hour's changes.
func Compacted(name string, extra map[string]string) TopicSpec {
	cfg := map[string]string{"cleanup.policy": "compact", "segment.ms": "3600000", "min.cleanable.dirty.ratio": "0.1"}
	for k, v := range extra {
		cfg[k] = v
	}
	return TopicSpec{Name: name, Partitions: 1, Configs: cfg, Verify: []string{"cleanup.policy"}}
}

// Log is the spec of a one-partition append-only topic (quarantine topics).
func Log(name string) TopicSpec {
	return TopicSpec{Name: name, Partitions: 1, Configs: map[string]string{"cleanup.policy": "delete"}, Verify: []string{"cleanup.policy"}}
}

// ErrTopicMismatch means an existing topic does not have the partitions or
// configs a service requires; the service must refuse to start.
var ErrTopicMismatch = errors.New("topic exists with the wrong configuration")

// Client returns a kafka-go client for the brokers.
func Client(brokers []string) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
}

// Retry runs op with exponential backoff until it succeeds, returns a
// backoff.Permanent error, ctx ends, or maxElapsed passes.
func Retry(ctx context.Context, maxElapsed time.Duration, op func() error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 100 * time.Millisecond
	b.MaxInterval = 2 * time.Second
	b.MaxElapsedTime = maxElapsed
	return backoff.Retry(op, backoff.WithContext(b, ctx))
}

// EnsureTopics creates the missing topics and verifies the existing ones,
// waiting up to maxWait for the cluster to answer. A topic with another
// partition count or a verified config of another value is an
// ErrTopicMismatch, returned at once.
func EnsureTopics(ctx context.Context, brokers []string, maxWait time.Duration, specs ...TopicSpec) error {
	c := Client(brokers)
	return Retry(ctx, maxWait, func() error {
		err := ensure(ctx, c, specs)
		if errors.Is(err, ErrTopicMismatch) {
			return backoff.Permanent(err)
		}
		return err
	})
}

func ensure(ctx context.Context, c *kafka.Client, specs []TopicSpec) error {
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: names(specs)})
	if err != nil {
		return fmt.Errorf("cluster metadata: %w", err)
	}
	exists := map[string]bool{}
	for _, t := range md.Topics {
		exists[t.Name] = t.Error == nil
	}
	req := &kafka.CreateTopicsRequest{}
	var existing []TopicSpec
	var uncreatable error
	for _, s := range specs {
		if exists[s.Name] {
			existing = append(existing, s)
			continue
		}
		factor, minInsync := replication(s.Replicas, len(md.Brokers))
		if factor > len(md.Brokers) {
			// Retried: a cluster that is starting may not list them all yet.
			uncreatable = errors.Join(uncreatable, fmt.Errorf("topic %s needs %d replicas, the cluster has %d brokers", s.Name, factor, len(md.Brokers)))
			continue
		}
		cfg := s.Configs
		if _, ok := cfg["min.insync.replicas"]; !ok && minInsync != "" {
			cfg = maps.Clone(cfg)
			cfg["min.insync.replicas"] = minInsync
		}
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: factor}
		for _, k := range slices.Sorted(maps.Keys(cfg)) {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: cfg[k]})
		}
		req.Topics = append(req.Topics, tc)
	}
	if uncreatable != nil {
		// An existing topic of the wrong shape is refused at once all the same.
		if len(existing) > 0 {
			if err := verify(ctx, c, existing); err != nil {
				return err
			}
		}
		return uncreatable
	}
	if len(req.Topics) == 0 {
		return verify(ctx, c, specs)
	}
	resp, err := c.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	for name, err := range resp.Errors {
		// On a secured cluster only the set-up principal may create
		// topics: a refusal to create is not fatal, the verification
		// below decides (an absent topic fails it).
		if err != nil && !errors.Is(err, kafka.TopicAlreadyExists) && !errors.Is(err, kafka.TopicAuthorizationFailed) {
			return fmt.Errorf("create topic %s: %w", name, err)
		}
	}
	return verify(ctx, c, specs)
}

func names(specs []TopicSpec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	return out
}

func verify(ctx context.Context, c *kafka.Client, specs []TopicSpec) error {
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{Topics: names(specs)})
	if err != nil {
		return fmt.Errorf("topic metadata: %w", err)
	}
	parts, replicas := map[string]int{}, map[string]int{}
	for _, t := range md.Topics {
		if t.Error != nil {
			return fmt.Errorf("topic %s metadata: %w", t.Name, t.Error)
		}
		parts[t.Name] = len(t.Partitions)
		for _, p := range t.Partitions {
			if p.ID == 0 {
				replicas[t.Name] = len(p.Replicas)
			}
		}
	}
	dreq := &kafka.DescribeConfigsRequest{}
	for _, s := range specs {
		keys := s.Verify
		if _, minInsync := replication(s.Replicas, 0); minInsync != "" {
			keys = append(slices.Clip(keys), "min.insync.replicas")
		}
		if len(keys) > 0 {
			dreq.Resources = append(dreq.Resources, kafka.DescribeConfigRequestResource{
				ResourceType: kafka.ResourceTypeTopic, ResourceName: s.Name, ConfigNames: keys,
			})
		}
	}
	got := map[string]map[string]string{}
	if len(dreq.Resources) > 0 {
		if got, err = describe(ctx, c, dreq); err != nil {
			return err
		}
	}
	var errs []error
	for _, s := range specs {
		if n := parts[s.Name]; n != s.Partitions {
			errs = append(errs, fmt.Errorf("%w: %s has %d partitions, deltaplane needs %d (recreate the topic)", ErrTopicMismatch, s.Name, n, s.Partitions))
		}
		for _, k := range s.Verify {
			if v := got[s.Name][k]; v != s.Configs[k] {
				errs = append(errs, fmt.Errorf("%w: %s has %s=%q, deltaplane needs %q (alter or recreate the topic)", ErrTopicMismatch, s.Name, k, v, s.Configs[k]))
			}
		}
		if n := replicas[s.Name]; n < s.Replicas {
			errs = append(errs, fmt.Errorf("%w: %s has replication factor %d, deltaplane is configured to require %d (reassign its partition, or lower KAFKA_REPLICATION_FACTOR)", ErrTopicMismatch, s.Name, n, s.Replicas))
		} else if _, want := replication(s.Replicas, 0); want != "" && !meets(got[s.Name]["min.insync.replicas"], want) {
			errs = append(errs, fmt.Errorf("%w: %s has min.insync.replicas=%q, deltaplane needs at least %q with %d replicas (alter the topic)", ErrTopicMismatch, s.Name, got[s.Name]["min.insync.replicas"], want, s.Replicas))
		}
	}
	return errors.Join(errs...)
}

// Deviations describes, for every existing topic of specs, each advised
// config whose value falls short of the spec's (another value, or a lower
// number). The caller reports them; they do not stop a service.
func Deviations(ctx context.Context, brokers []string, specs ...TopicSpec) ([]string, error) {
	dreq := &kafka.DescribeConfigsRequest{}
	for _, s := range specs {
		if len(s.Advise) > 0 {
			dreq.Resources = append(dreq.Resources, kafka.DescribeConfigRequestResource{
				ResourceType: kafka.ResourceTypeTopic, ResourceName: s.Name, ConfigNames: s.Advise,
			})
		}
	}
	if len(dreq.Resources) == 0 {
		return nil, nil
	}
	got, err := describe(ctx, Client(brokers), dreq)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range specs {
		for _, k := range s.Advise {
			if have, want := got[s.Name][k], s.Configs[k]; !meets(have, want) {
				out = append(out, fmt.Sprintf("%s has %s=%q, deltaplane advises %q", s.Name, k, have, want))
			}
		}
	}
	return out, nil
}

// meets reports whether a config value meets the wanted one: equal, or
// for numbers at least as large.
func meets(have, want string) bool {
	h, err1 := strconv.ParseInt(have, 10, 64)
	w, err2 := strconv.ParseInt(want, 10, 64)
	if err1 == nil && err2 == nil {
		return h >= w
	}
	return have == want
}

func describe(ctx context.Context, c *kafka.Client, req *kafka.DescribeConfigsRequest) (map[string]map[string]string, error) {
	resp, err := c.DescribeConfigs(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("describe topic configs: %w", err)
	}
	got := map[string]map[string]string{}
	for _, r := range resp.Resources {
		if r.Error != nil {
			return nil, fmt.Errorf("describe topic %s: %w", r.ResourceName, r.Error)
		}
		got[r.ResourceName] = map[string]string{}
		for _, e := range r.ConfigEntries {
			got[r.ResourceName][e.ConfigName] = e.ConfigValue
		}
	}
	return got, nil
}
