package wire

// Header names of a quarantine record on <topic>.dlq. The record keeps the
// original key and value; these say why and where it came from.
const (
	HeaderDLQReason    = "dlq-reason"    // "<kind>: <detail>", kind one of the Reason* below
	HeaderDLQTopic     = "dlq-topic"     // the topic the record was read from
	HeaderDLQPartition = "dlq-partition" // its partition
	HeaderDLQOffset    = "dlq-offset"    // its offset there
	HeaderDLQNode      = "dp-node"       // the data plane that quarantined it (several may quarantine one record)
)

// Reason kinds, the first word of a dlq-reason header. The sync-gateway
// quarantines cp.changes records with decode, schema, type, key, op, batch,
// entity and oversized; a data plane quarantines dp.deltas records with
// decode, schema, batch, key, type, entity and poison.
const (
	ReasonDecode    = "decode"    // not JSON, not the record it should be, or headers that do not parse
	ReasonSchema    = "schema"    // a newer or unknown schema version
	ReasonType      = "type"      // an unknown entity type
	ReasonKey       = "key"       // the record key does not match the record
	ReasonOp        = "op"        // an unknown op
	ReasonBatch     = "batch"     // bad transaction, version, index or count
	ReasonEntity    = "entity"    // an invalid entity body
	ReasonOversized = "oversized" // a record bigger than the configured maximum
	ReasonPoison    = "poison"    // handling it failed (or panicked) too many times
)
