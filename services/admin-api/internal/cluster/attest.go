package cluster

import (
	"sync"
	"time"

	"github.com/deltaplane/deltaplane/shared/attest"
	"github.com/deltaplane/deltaplane/shared/broker"
	"github.com/segmentio/kafka-go"
)

// heartbeatCheck refuses heartbeats a data plane could not have signed:
// on a secured cluster every data plane may write dp.status (Kafka's ACLs
// stop at the topic), so each heartbeat carries its signer's certificate
// and signature (shared/attest) and only a certificate of the record's own
// principal, dataplane-<key>, is accepted.
type heartbeatCheck struct {
	v *attest.Verifier

	mu      sync.Mutex
	refused map[string]uint64 // per record key
}

// RequireSigned makes the tracker accept a dp.status record (heartbeat or
// tombstone) only when v verifies it; call before Run. Refused records are
// logged (the first per key, then every 100th) and counted in
// RefusedHeartbeats.
func (t *Tracker) RequireSigned(v *attest.Verifier) {
	t.check = &heartbeatCheck{v: v, refused: map[string]uint64{}}
}

// NewHeartbeatVerifier trusts the CA in caFile for data planes'
// certificates, whose CN must be broker.DataPlanePrincipal(record key).
func NewHeartbeatVerifier(caFile string) (*attest.Verifier, error) {
	return attest.NewVerifier(caFile, broker.DataPlanePrincipal)
}

// RefusedHeartbeats counts the dp.status records refused per key.
func (t *Tracker) RefusedHeartbeats() map[string]uint64 {
	out := map[string]uint64{}
	if t.check == nil {
		return out
	}
	t.check.mu.Lock()
	defer t.check.mu.Unlock()
	for k, n := range t.check.refused {
		out[k] = n
	}
	return out
}

// admit reports whether the record may be applied.
func (t *Tracker) admit(m kafka.Message) bool {
	if t.check == nil {
		return true
	}
	err := t.check.v.Verify(m.Key, m.Value, m.Headers, time.Now())
	if err == nil {
		return true
	}
	t.check.mu.Lock()
	n := t.check.refused[string(m.Key)] + 1
	t.check.refused[string(m.Key)] = n
	t.check.mu.Unlock()
	if n == 1 || n%100 == 0 {
		t.log.Warn("refusing heartbeat not signed by its data plane", "topic", t.statusTopic, "offset", m.Offset,
			"key", string(m.Key), "refused_for_key", n, "err", err)
	}
	return false
}
