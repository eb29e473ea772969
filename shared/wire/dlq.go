package wire

// Header names of a quarantine record on <topic>.dlq. The record keeps the
// original key and value; these say why and where it came from.
const (
	HeaderDLQReason    = "dlq-reason"    // "<kind>: <detail>", kind one of decode, schema, type, key, op, batch, entity, oversized (cp.changes); decode, schema, batch, key, type, entity, poison (dp.deltas)
	HeaderDLQTopic     = "dlq-topic"     // the topic the record was read from
	HeaderDLQPartition = "dlq-partition" // its partition
	HeaderDLQOffset    = "dlq-offset"    // its offset there
	HeaderDLQNode      = "dp-node"       // the data plane that quarantined it (several may quarantine one record)
)
