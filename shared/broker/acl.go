package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// The principals of a secured cluster: the CN of each service's
// certificate (the brokers map CN=x to User:x). A data plane's principal
// is DataPlanePrincipal(node id).
const (
	PrincipalAdminAPI    = "admin-api"
	PrincipalSyncGateway = "sync-gateway"
	PrincipalSetup       = "kafka-setup"  // creates topics and ACLs; a super user
	PrincipalBroker      = "kafka-broker" // the brokers themselves; a super user
)

// DataPlanePrincipal is the principal (and certificate CN) of the data
// plane with node id node.
func DataPlanePrincipal(node string) string { return "dataplane-" + node }

// Grants is the ACL table of a secured cluster, in one place:
//
//	admin-api     WRITE cp.changes; READ dp.status, dp.deltas and the three
//	              quarantine topics (the data plane listing, the head
//	              version, /clustering's quarantine; no group); DESCRIBE
//	              the sync group (which sync-gateway is active)
//	sync-gateway  READ cp.changes with group syncGroup; WRITE (and READ:
//	              it replays its own output) dp.deltas, dp.full and the
//	              quarantine topic cp.changes.dlq
//	data plane    READ dp.deltas and dp.full with its own group
//	              dpGroupPrefix+node; WRITE dp.status (its own key, which
//	              admin-api checks: see services/admin-api/internal/cluster)
//	              and its quarantine topics dp.deltas.dlq, dp.full.dlq
//
// and DESCRIBE_CONFIGS on every topic a principal uses (the services
// verify the topics' configs at start). Nobody but PrincipalSetup may
// create, alter or delete a topic or an ACL: no CREATE, ALTER,
// ALTER_CONFIGS, DELETE or CLUSTER grant exists.
func Grants(prefix, syncGroup, dpGroupPrefix string, dataplanes ...string) []kafka.ACLEntry {
	changes, deltas, full, status := prefix+wire.TopicChanges, prefix+wire.TopicDeltas, prefix+wire.TopicFull, prefix+wire.TopicStatus
	var out []kafka.ACLEntry
	topic := func(principal string, op kafka.ACLOperationType, topics ...string) {
		for _, t := range topics {
			out = append(out, entry(principal, kafka.ResourceTypeTopic, t, op))
		}
	}
	dlqs := []string{changes + wire.DLQSuffix, deltas + wire.DLQSuffix, full + wire.DLQSuffix}
	topic(PrincipalAdminAPI, kafka.ACLOperationTypeWrite, changes)
	topic(PrincipalAdminAPI, kafka.ACLOperationTypeRead, append([]string{status, deltas}, dlqs...)...)
	topic(PrincipalAdminAPI, kafka.ACLOperationTypeDescribeConfigs, changes, status, deltas)
	out = append(out, entry(PrincipalAdminAPI, kafka.ResourceTypeGroup, syncGroup, kafka.ACLOperationTypeDescribe))

	sgOut := []string{deltas, full, changes + wire.DLQSuffix}
	topic(PrincipalSyncGateway, kafka.ACLOperationTypeRead, append([]string{changes}, sgOut...)...)
	topic(PrincipalSyncGateway, kafka.ACLOperationTypeWrite, sgOut...)
	topic(PrincipalSyncGateway, kafka.ACLOperationTypeDescribeConfigs, append([]string{changes}, sgOut...)...)
	out = append(out, entry(PrincipalSyncGateway, kafka.ResourceTypeGroup, syncGroup, kafka.ACLOperationTypeRead))

	for _, node := range dataplanes {
		p := DataPlanePrincipal(node)
		topic(p, kafka.ACLOperationTypeRead, deltas, full)
		topic(p, kafka.ACLOperationTypeWrite, status, deltas+wire.DLQSuffix, full+wire.DLQSuffix)
		topic(p, kafka.ACLOperationTypeDescribeConfigs, deltas, full, status, deltas+wire.DLQSuffix, full+wire.DLQSuffix)
		out = append(out, entry(p, kafka.ResourceTypeGroup, dpGroupPrefix+node, kafka.ACLOperationTypeRead))
	}
	return out
}

func entry(principal string, rt kafka.ResourceType, name string, op kafka.ACLOperationType) kafka.ACLEntry {
	return kafka.ACLEntry{
		ResourceType: rt, ResourceName: name, ResourcePatternType: kafka.PatternTypeLiteral,
		Principal: "User:" + principal, Host: "*", Operation: op, PermissionType: kafka.ACLPermissionTypeAllow,
	}
}

// SetupTopics are the topics of a secured cluster, created at set-up by
// PrincipalSetup because no service may create one: the specs the
// services verify (cp.changes, dp.deltas with its compaction lag, dp.full,
// dp.status, and the quarantine topics).
func SetupTopics(prefix string) []TopicSpec {
	return []TopicSpec{
		Compacted(prefix+wire.TopicChanges, nil),
		Compacted(prefix+wire.TopicDeltas, nil).WithCompactionLag(DefaultCompactionLag),
		Compacted(prefix+wire.TopicFull, nil),
		Compacted(prefix+wire.TopicStatus, nil),
		Log(prefix + wire.TopicChanges + wire.DLQSuffix),
		Log(prefix + wire.TopicDeltas + wire.DLQSuffix),
		Log(prefix + wire.TopicFull + wire.DLQSuffix),
	}
}

// CreateACLs adds the entries (adding an existing ACL is a no-op).
func CreateACLs(ctx context.Context, brokers []string, entries []kafka.ACLEntry) error {
	resp, err := Client(brokers).CreateACLs(ctx, &kafka.CreateACLsRequest{ACLs: entries})
	if err != nil {
		return fmt.Errorf("create acls: %w", err)
	}
	var errs []error
	for i, e := range resp.Errors {
		if e != nil {
			errs = append(errs, fmt.Errorf("acl %s %v on %s: %w", entries[i].Principal, entries[i].Operation, entries[i].ResourceName, e))
		}
	}
	return errors.Join(errs...)
}

// WaitACLs waits until the broker answering DescribeAcls holds every entry:
// an ACL is committed by the controller and then applied by each broker's
// authorizer a moment later, and a service started in between would be
// refused.
func WaitACLs(ctx context.Context, brokers []string, entries []kafka.ACLEntry, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	c := Client(brokers)
	for {
		resp, err := c.DescribeACLs(ctx, &kafka.DescribeACLsRequest{Filter: kafka.ACLFilter{
			ResourceTypeFilter: kafka.ResourceTypeAny, ResourcePatternTypeFilter: kafka.PatternTypeAny,
			Operation: kafka.ACLOperationTypeAny, PermissionType: kafka.ACLPermissionTypeAny,
		}})
		missing := len(entries)
		if err == nil && resp.Error == nil {
			have := map[kafka.ACLEntry]bool{}
			for _, r := range resp.Resources {
				for _, a := range r.ACLs {
					have[kafka.ACLEntry{ResourceType: r.ResourceType, ResourceName: r.ResourceName, ResourcePatternType: r.PatternType,
						Principal: a.Principal, Host: a.Host, Operation: a.Operation, PermissionType: a.PermissionType}] = true
				}
			}
			missing = 0
			for _, e := range entries {
				if !have[e] {
					missing++
				}
			}
			if missing == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("acls: %d of %d not visible on the broker (last error %v): %w", missing, len(entries), err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
