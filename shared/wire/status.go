package wire

import "time"

// Heartbeat is the value of a dp.status record; the key is the node id.
// Data planes publish one periodically and after each applied batch.
type Heartbeat struct {
	Schema    int       `json:"schema"`
	NodeID    string    `json:"node_id"`
	Hostname  string    `json:"hostname"`
	IP        string    `json:"ip"`
	Mode      string    `json:"mode"` // ModeIncremental or ModeFull
	Version   uint64    `json:"version"`
	Hash      string    `json:"config_hash"`
	LastApply time.Time `json:"last_apply"`
	LastSeen  time.Time `json:"last_seen"`
	Resyncs   uint64    `json:"resyncs"`
	// ResyncReason says why the last resync happened ("" when none did).
	ResyncReason string   `json:"last_resync_reason,omitempty"`
	Errors       []string `json:"errors,omitempty"`
	ProcessName  string   `json:"process,omitempty"`
}
