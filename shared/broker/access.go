package broker

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/metadata"
)

// Need is one access a service requires: an operation on a topic, or Read
// on a consumer group (Group set, Topic the group's topic).
type Need struct {
	Topic string
	Op    kafka.ACLOperationType // ACLOperationTypeRead, Write or DescribeConfigs
	Group string
}

// Refusal is a Need the cluster's ACLs refuse to this service's principal.
type Refusal struct {
	Resource  string `json:"resource"`  // "topic cp.changes" or "group deltaplane-dp-x"
	Operation string `json:"operation"` // READ, WRITE, DESCRIBE_CONFIGS
	Error     string `json:"error"`
}

func (r Refusal) String() string {
	return fmt.Sprintf("kafka ACL refuses %s on %s: %s", r.Operation, r.Resource, r.Error)
}

// RefusedError is the error of CheckAccess when something is refused.
type RefusedError struct{ Refusals []Refusal }

func (e *RefusedError) Error() string {
	parts := make([]string, len(e.Refusals))
	for i, r := range e.Refusals {
		parts[i] = r.String()
	}
	return strings.Join(parts, "; ")
}

var opNames = map[kafka.ACLOperationType]string{
	kafka.ACLOperationTypeRead: "READ", kafka.ACLOperationTypeWrite: "WRITE",
	kafka.ACLOperationTypeDescribe: "DESCRIBE", kafka.ACLOperationTypeDescribeConfigs: "DESCRIBE_CONFIGS",
}

// CheckAccess asks the cluster, without reading or writing any record,
// whether this process's principal (its TLS certificate, see Secure) has
// every access in needs, and returns a *RefusedError naming each refused
// one. Topic operations come from a Metadata request (v8) with the topic's
// authorized operations; a group's from an OffsetFetch on it. Any other
// failure (broker unreachable) is a plain error, to be retried.
func CheckAccess(ctx context.Context, brokers []string, needs ...Need) error {
	var topics []string
	for _, n := range needs {
		if n.Group == "" && !containsString(topics, n.Topic) {
			topics = append(topics, n.Topic)
		}
	}
	ops, err := topicOperations(ctx, brokers, topics)
	if err != nil {
		return err
	}
	var refused []Refusal
	c := Client(brokers)
	for _, n := range needs {
		if n.Group != "" {
			resp, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: n.Group, Topics: map[string][]int{n.Topic: {0}}})
			if err == nil {
				err = resp.Error
			}
			switch {
			case errors.Is(err, kafka.GroupAuthorizationFailed):
				refused = append(refused, Refusal{Resource: "group " + n.Group, Operation: "READ", Error: err.Error()})
			case err != nil:
				return fmt.Errorf("check group %s: %w", n.Group, err)
			}
			continue
		}
		got := ops[n.Topic]
		if got.err != nil {
			refused = append(refused, Refusal{Resource: "topic " + n.Topic, Operation: opNames[n.Op], Error: got.err.Error()})
			continue
		}
		if got.allowed&(1<<uint(n.Op)) == 0 {
			refused = append(refused, Refusal{Resource: "topic " + n.Topic, Operation: opNames[n.Op], Error: "operation not in the principal's authorized operations"})
		}
	}
	if len(refused) > 0 {
		return &RefusedError{Refusals: refused}
	}
	return nil
}

type topicOps struct {
	allowed int32
	err     error
}

// topicOperations sends Metadata v8 with IncludeTopicAuthorizedOperations
// on its own connection: kafka-go's Transport answers metadata from its
// cache, which does not carry the authorized operations.
func topicOperations(ctx context.Context, brokers []string, topics []string) (map[string]topicOps, error) {
	out := map[string]topicOps{}
	if len(topics) == 0 {
		return out, nil
	}
	d := kafka.DefaultDialer
	var lastErr error
	for _, addr := range brokers {
		conn, err := (&net.Dialer{Timeout: d.Timeout}).DialContext(ctx, "tcp", addr)
		if err != nil {
			lastErr = err
			continue
		}
		if d.TLS != nil {
			cfg := d.TLS.Clone()
			if cfg.ServerName == "" {
				cfg.ServerName, _, _ = net.SplitHostPort(addr)
			}
			tc := tls.Client(conn, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				lastErr = err
				continue
			}
			conn = tc
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		req := &metadata.Request{TopicNames: topics, IncludeTopicAuthorizedOperations: true}
		err = protocol.WriteRequest(conn, 8, 1, "deltaplane-access-check", req)
		var msg protocol.Message
		if err == nil {
			_, msg, err = protocol.ReadResponse(conn, protocol.Metadata, 8)
		}
		conn.Close()
		if err != nil {
			lastErr = err
			continue
		}
		for _, t := range msg.(*metadata.Response).Topics {
			o := topicOps{allowed: t.TopicAuthorizedOperations}
			if t.ErrorCode != 0 {
				o.err = kafka.Error(t.ErrorCode)
			}
			out[t.Name] = o
		}
		return out, nil
	}
	return nil, fmt.Errorf("kafka access check: %w", lastErr)
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// AwaitAccess runs CheckAccess until the cluster answers (retrying
// connection failures with backoff until ctx ends) and returns its
// *RefusedError, or nil when every need is granted. A refusal is not
// retried: it does not heal by waiting, and a loop of retries would look
// like a broker outage in the logs.
func AwaitAccess(ctx context.Context, brokers []string, needs ...Need) error {
	return Retry(ctx, 0, func() error {
		err := CheckAccess(ctx, brokers, needs...)
		var refused *RefusedError
		if errors.As(err, &refused) {
			return backoff.Permanent(err)
		}
		return err
	})
}

// Gate holds a service's ACL refusal, if any, and answers /status with it.
type Gate struct{ refused atomic.Pointer[RefusedError] }

// Refuse records the refusal: from now on Wrap's /status answers 503 with it.
func (g *Gate) Refuse(err *RefusedError) { g.refused.Store(err) }

// Refused returns the refusal, or nil.
func (g *Gate) Refused() *RefusedError { return g.refused.Load() }

// Wrap serves /status from RefusedHandler once a refusal is recorded, and
// everything else (and /status before) from next.
func (g *Gate) Wrap(service string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ref := g.refused.Load(); ref != nil && r.URL.Path == "/status" {
			RefusedHandler(service, ref).ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Watch re-checks needs every interval (config.KafkaTLS.CheckEvery: one
// Metadata request, and an OffsetFetch per group) until ctx ends, so that an ACL
// removed while the service runs is named too: the refusal is logged once
// and served on /status (503) while it lasts, and its end is logged once.
// A check that fails for another reason (broker away) changes nothing.
func (g *Gate) Watch(ctx context.Context, brokers []string, every time.Duration, log *slog.Logger, needs ...Need) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := CheckAccess(ctx, brokers, needs...)
		var refused *RefusedError
		switch {
		case errors.As(err, &refused):
			if g.refused.Swap(refused) == nil {
				log.Error("kafka refuses this service's access now; fix the ACLs of docs/security.md", "refused", refused.Error())
			}
		case err == nil:
			if g.refused.Swap(nil) != nil {
				log.Info("kafka grants this service's access again")
			}
		}
	}
}

// RefusedHandler is what a service serves instead of its API when Kafka's
// ACLs refuse it at start: every path answers 503 with the refusals, so
// /status names the ACL to fix instead of looking like an outage.
func RefusedHandler(service string, refused *RefusedError) http.Handler {
	body, _ := json.Marshal(map[string]any{
		"service": service, "status": "refused by kafka acl",
		"kafka_refusals": refused.Refusals,
		"fix":            "grant this service's principal the ACLs of docs/security.md (refused at start: then restart it; refused while running: it clears by itself)",
	})
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(body)
	})
}
