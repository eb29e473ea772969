//go:build e2e

package secure

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// as is a Kafka client authenticated as principal.
type as struct {
	t  *testing.T
	tr *kafka.Transport
}

func client(t *testing.T, principal string) as {
	return as{t: t, tr: &kafka.Transport{TLS: clientTLS(t, principal), Dial: (&net.Dialer{Timeout: 3 * time.Second}).DialContext}}
}

// write produces one record to partition 0 of topic, straight to the
// broker: kafka-go's Writer asks for metadata first, and the broker hides
// a topic the principal may not describe (the Writer then reports "Unknown
// Topic Or Partition"); a direct produce gets the broker's own verdict.
func (a as) write(ctx context.Context, topic string) error {
	raw, err := (&tls.Dialer{NetDialer: &net.Dialer{Timeout: 3 * time.Second}, Config: a.tr.TLS}).DialContext(ctx, "tcp", env.kafka)
	if err != nil {
		return err
	}
	conn := kafka.NewConnWith(raw, kafka.ConnConfig{ClientID: "secure-test", Topic: topic, Partition: 0})
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.SetRequiredAcks(-1)
	_, err = conn.WriteMessages(kafka.Message{Key: []byte("k"), Value: []byte("{}")})
	return err
}

func (a as) kafka() *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(env.kafka), Transport: a.tr, Timeout: 10 * time.Second}
}

// commit commits offset 0 of topic in group as a standalone consumer,
// again while the group coordinator is not ready (the first group of the
// broker creates __consumer_offsets).
func (a as) commit(ctx context.Context, group, topic string) error {
	for {
		err := a.commitOnce(ctx, group, topic)
		var ke kafka.Error
		if !errors.As(err, &ke) || !ke.Temporary() || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (a as) commitOnce(ctx context.Context, group, topic string) error {
	resp, err := a.kafka().OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: 0, Offset: 0}}},
	})
	if err != nil {
		return err
	}
	for _, ps := range resp.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return p.Error
			}
		}
	}
	return nil
}

// is reports whether err is (or a writer's per-message errors hold) target.
func is(err error, target error) bool {
	if errors.Is(err, target) {
		return true
	}
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if errors.Is(e, target) {
				return true
			}
		}
	}
	return false
}

// TestACLRefusals: on the secured broker with the ACLs of broker.Grants,
// each principal can do its own work and Kafka refuses what the issue
// names: a data plane's credential writing dp.deltas or cp.changes or
// using another data plane's group, any service creating, altering or
// deleting a topic or creating an ACL, and a client without a certificate
// (or without TLS) at all.
func TestACLRefusals(t *testing.T) {
	p := prefix(t)
	grant(t, p, "dp-1", "dp-2")
	changes, deltas, status := p+wire.TopicChanges, p+wire.TopicDeltas, p+wire.TopicStatus
	dp1, admin, sync := client(t, "dataplane-dp-1"), client(t, broker.PrincipalAdminAPI), client(t, broker.PrincipalSyncGateway)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// What each principal may do works (else a refusal below proves nothing).
	for _, ok := range []struct {
		name string
		err  error
	}{
		{"data plane writes dp.status", dp1.write(ctx, status)},
		{"data plane commits in its own group", dp1.commit(ctx, p+"dp-dp-1", deltas)},
		{"admin-api writes cp.changes", admin.write(ctx, changes)},
		{"sync-gateway writes dp.deltas", sync.write(ctx, deltas)},
		{"sync-gateway commits in its group", sync.commit(ctx, p+"sync", changes)},
	} {
		if ok.err != nil {
			t.Errorf("%s: %v", ok.name, ok.err)
		}
	}

	refusals := []struct {
		name string
		err  error
		want error
	}{
		{"data plane writes dp.deltas", dp1.write(ctx, deltas), kafka.TopicAuthorizationFailed},
		{"data plane writes cp.changes", dp1.write(ctx, changes), kafka.TopicAuthorizationFailed},
		{"data plane commits in another data plane's group", dp1.commit(ctx, p+"dp-dp-2", deltas), kafka.GroupAuthorizationFailed},
		{"data plane commits in the sync-gateway's group", dp1.commit(ctx, p+"sync", changes), kafka.GroupAuthorizationFailed},
		{"admin-api writes dp.deltas", admin.write(ctx, deltas), kafka.TopicAuthorizationFailed},
		{"sync-gateway writes cp.changes", sync.write(ctx, changes), kafka.TopicAuthorizationFailed},
	}
	for _, r := range refusals {
		if !is(r.err, r.want) {
			t.Errorf("%s: got %v, want %v", r.name, r.err, r.want)
		}
	}

	// Nobody but the set-up principal creates, reconfigures or deletes a
	// topic, or creates an ACL.
	for _, c := range []as{dp1, admin, sync} {
		resp, err := c.kafka().CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: p + "new", NumPartitions: 1, ReplicationFactor: 1}}})
		if err == nil {
			err = resp.Errors[p+"new"]
		}
		if !is(err, kafka.TopicAuthorizationFailed) {
			t.Errorf("create topic: got %v, want TopicAuthorizationFailed", err)
		}
		alter, err := c.kafka().AlterConfigs(ctx, &kafka.AlterConfigsRequest{Resources: []kafka.AlterConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: deltas,
			Configs: []kafka.AlterConfigRequestConfig{{Name: "cleanup.policy", Value: "delete"}},
		}}})
		if err == nil {
			for _, e := range alter.Errors {
				err = e
			}
		}
		if !is(err, kafka.TopicAuthorizationFailed) {
			t.Errorf("alter topic config: got %v, want TopicAuthorizationFailed", err)
		}
		del, err := c.kafka().DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{deltas}})
		if err == nil {
			err = del.Errors[deltas]
		}
		if !is(err, kafka.TopicAuthorizationFailed) {
			t.Errorf("delete topic: got %v, want TopicAuthorizationFailed", err)
		}
		acl, err := c.kafka().CreateACLs(ctx, &kafka.CreateACLsRequest{ACLs: broker.Grants(p, "x", "x", "rogue")[:1]})
		if err == nil {
			err = acl.Errors[0]
		}
		if !is(err, kafka.ClusterAuthorizationFailed) {
			t.Errorf("create acl: got %v, want ClusterAuthorizationFailed", err)
		}
	}

	// No certificate: the broker ends the TLS handshake.
	anon := client(t, "")
	if err := anon.write(ctx, status); err == nil {
		t.Error("a client without a certificate wrote dp.status")
	} else {
		t.Logf("no certificate: %v", err)
	}
	// No TLS at all.
	plain := &kafka.Writer{Addr: kafka.TCP(env.kafka), Topic: status, MaxAttempts: 1, BatchTimeout: time.Millisecond,
		Transport: &kafka.Transport{Dial: (&net.Dialer{Timeout: 3 * time.Second}).DialContext}, WriteTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second}
	defer plain.Close()
	pctx, pcancel := context.WithTimeout(ctx, 20*time.Second)
	defer pcancel()
	if err := plain.WriteMessages(pctx, kafka.Message{Key: []byte("k"), Value: []byte("{}")}); err == nil {
		t.Error("a PLAINTEXT client wrote dp.status")
	} else {
		t.Logf("plaintext: %v", err)
	}
}

// TestCheckAccess: the preflight the services run names exactly what a
// principal lacks, from the broker's answer.
func TestCheckAccess(t *testing.T) {
	p := prefix(t)
	grant(t, p, "dp-1")
	restore, err := broker.Secure(tlsEnv("dataplane-dp-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer restore()
	ctx := t.Context()
	ok := []broker.Need{
		{Topic: p + wire.TopicDeltas, Op: kafka.ACLOperationTypeRead},
		{Topic: p + wire.TopicDeltas, Group: p + "dp-dp-1", Op: kafka.ACLOperationTypeRead},
		{Topic: p + wire.TopicStatus, Op: kafka.ACLOperationTypeWrite},
	}
	if err := broker.CheckAccess(ctx, []string{env.kafka}, ok...); err != nil {
		t.Fatalf("granted needs refused: %v", err)
	}
	err = broker.CheckAccess(ctx, []string{env.kafka}, append(ok,
		broker.Need{Topic: p + wire.TopicDeltas, Op: kafka.ACLOperationTypeWrite},
		broker.Need{Topic: p + wire.TopicChanges, Op: kafka.ACLOperationTypeWrite},
		broker.Need{Topic: p + wire.TopicDeltas, Group: p + "dp-dp-2", Op: kafka.ACLOperationTypeRead})...)
	var refused *broker.RefusedError
	if !errors.As(err, &refused) || len(refused.Refusals) != 3 {
		t.Fatalf("got %v, want three refusals", err)
	}
	want := []broker.Refusal{
		{Resource: "topic " + p + wire.TopicDeltas, Operation: "WRITE"},
		{Resource: "topic " + p + wire.TopicChanges, Operation: "WRITE"},
		{Resource: "group " + p + "dp-dp-2", Operation: "READ"},
	}
	for i, r := range refused.Refusals {
		if r.Resource != want[i].Resource || r.Operation != want[i].Operation {
			t.Errorf("refusal %d: got %+v, want %+v", i, r, want[i])
		}
	}
}
