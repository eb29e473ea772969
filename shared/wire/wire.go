// Package wire is deltaplane's wire contract: topic names, record keys, the
// change events admin-api publishes on cp.changes, the delta records the
// sync-gateway publishes on dp.deltas, the data-plane heartbeats on
// dp.status, the quarantine records on <topic>.dlq (dlq.go), and the
// content hash every component computes the same way.
//
// # cp.changes (schema 1)
//
// One record per changed entity, published by admin-api's outbox relay in
// commit order. Key: Key(type, id). Value: a ChangeEvent as JSON, also for
// deletes (the sync-gateway must see every delete, however late it reads, so
// cp.changes never carries tombstones). Tx numbers are gap-free and follow
// commit order; all events of one admin transaction share Tx and are
// published contiguously with Index 0..Count-1.
//
// # dp.deltas (schema 1)
//
// A per-entity table: one record per changed entity, key Key(type, id),
// value the entity's JSON, or no value (a Kafka tombstone) when the entity was
// deleted, so compaction eventually forgets deleted entities. Everything a
// data plane needs to check continuity and completeness is in the record
// headers (DeltaHeader): the configuration version the record belongs to,
// its index in that version's batch, the batch size, the content hash of the
// whole configuration after the batch, and the source transaction.
//
// A batch is one admin transaction; it may span many records. A data plane
// applies a version only once it holds records 0..Count-1 of it. Versions
// are gap-free: a record whose version is more than one above the applied
// version means records are missing (compaction, expiry) and the data plane
// rebuilds from the topic instead.
package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Topic names. Each has one partition and cleanup.policy=compact, except
// the quarantine topics (<topic>.dlq: cp.changes.dlq of the sync-gateway,
// dp.deltas.dlq or dp.full.dlq of the data planes), which have one
// partition and cleanup.policy=delete (broker.Log): a quarantined record
// is kept for the broker's retention time, not replaced by a later one of
// its key.
const (
	TopicChanges = "cp.changes"
	TopicDeltas  = "dp.deltas"
	TopicFull    = "dp.full"
	TopicStatus  = "dp.status"
	// DLQSuffix names the quarantine topic of a topic: "cp.changes.dlq".
	DLQSuffix = ".dlq"
)

// Sync modes: the SYNC_MODE of the sync-gateway and of a data plane, and a
// Heartbeat's Mode. Incremental publishes and follows dp.deltas; full
// publishes and follows whole snapshots on dp.full.
const (
	ModeIncremental = "incremental"
	ModeFull        = "full"
)

// SchemaVersion is the schema of every record this package describes. A
// consumer that meets a higher schema quarantines the record.
const SchemaVersion = 1

// Entity types, named as Kong's Admin API names its collections.
const (
	TypeService       = "services"
	TypeRoute         = "routes"
	TypeConsumer      = "consumers"
	TypePlugin        = "plugins"
	TypeUpstream      = "upstreams"
	TypeTarget        = "targets"
	TypeCertificate   = "certificates"
	TypeSNI           = "snis"
	TypeCACertificate = "ca_certificates"
	TypeKeyAuth       = "keyauth_credentials"
)

// EntityTypes lists every known entity type.
var EntityTypes = []string{
	TypeService, TypeRoute, TypeConsumer, TypePlugin, TypeUpstream,
	TypeTarget, TypeCertificate, TypeSNI, TypeCACertificate, TypeKeyAuth,
}

// KnownType reports whether t is an entity type of this schema.
func KnownType(t string) bool {
	for _, k := range EntityTypes {
		if k == t {
			return true
		}
	}
	return false
}

// Key is the record key of an entity on every config topic: "type/id".
func Key(entityType, id string) string { return entityType + "/" + id }

// SplitKey is the inverse of Key.
func SplitKey(key string) (entityType, id string, err error) {
	t, id, ok := strings.Cut(key, "/")
	if !ok || t == "" || id == "" {
		return "", "", fmt.Errorf("key %q: want type/id", key)
	}
	return t, id, nil
}

// Op is what happened to an entity.
type Op string

const (
	OpUpsert Op = "upsert"
	OpDelete Op = "delete"
)

// ChangeEvent is the value of a cp.changes record.
type ChangeEvent struct {
	Schema int    `json:"schema"`
	Tx     uint64 `json:"tx"`    // commit-ordered, gap-free admin transaction number (from 1)
	Index  int    `json:"index"` // position of this event in its transaction
	Count  int    `json:"count"` // number of events in the transaction
	Op     Op     `json:"op"`
	Type   string `json:"type"`
	ID     string `json:"id"`
	// Entity is the entity as the Admin API returns it; absent on delete.
	Entity json.RawMessage `json:"entity,omitempty"`
}

// Validation errors of ChangeEvent.Check; the sync-gateway quarantines events
// that fail it, naming the reason.
var (
	ErrSchema     = errors.New("unsupported schema version")
	ErrEntityType = errors.New("unknown entity type")
	ErrKey        = errors.New("record key does not match the event")
	ErrOp         = errors.New("unknown op")
	ErrBatch      = errors.New("bad transaction position")
	ErrEntity     = errors.New("bad entity")
)

// DecodeChange parses and checks a cp.changes record.
func DecodeChange(key, value []byte) (ChangeEvent, error) {
	var ev ChangeEvent
	if err := json.Unmarshal(value, &ev); err != nil {
		return ev, fmt.Errorf("%w: %v", ErrEntity, err)
	}
	return ev, ev.Check(string(key))
}

// Check validates the event against its record key.
func (ev ChangeEvent) Check(key string) error {
	switch {
	case ev.Schema != SchemaVersion:
		return fmt.Errorf("%w: %d", ErrSchema, ev.Schema)
	case !KnownType(ev.Type):
		return fmt.Errorf("%w: %q", ErrEntityType, ev.Type)
	case ev.ID == "" || key != Key(ev.Type, ev.ID):
		return fmt.Errorf("%w: key %q, event %s", ErrKey, key, Key(ev.Type, ev.ID))
	case ev.Tx == 0 || ev.Count < 1 || ev.Index < 0 || ev.Index >= ev.Count:
		return fmt.Errorf("%w: tx %d index %d count %d", ErrBatch, ev.Tx, ev.Index, ev.Count)
	}
	switch ev.Op {
	case OpDelete:
		if len(ev.Entity) != 0 {
			return fmt.Errorf("%w: delete carries an entity", ErrEntity)
		}
	case OpUpsert:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(ev.Entity, &obj); err != nil {
			return fmt.Errorf("%w: %v", ErrEntity, err)
		}
		var id string
		if err := json.Unmarshal(obj["id"], &id); err != nil || id != ev.ID {
			return fmt.Errorf("%w: entity id %s does not match event id %q", ErrEntity, obj["id"], ev.ID)
		}
	default:
		return fmt.Errorf("%w: %q", ErrOp, ev.Op)
	}
	return nil
}
