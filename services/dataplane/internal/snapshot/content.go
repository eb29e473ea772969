package snapshot

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/deltaplane/deltaplane/shared/wire"
)

// InvalidDigestPrefix starts the digest of an entity whose bytes are not
// JSON (a record the node quarantined but holds, since its batch is applied
// whole): the prefix and the SHA-256 of the raw bytes. It never equals a
// wire.ContentDigest, so such an entity always shows as a difference.
const InvalidDigestPrefix = "invalid-json:"

// Content is the snapshot's wire.ContentView: its version and hash and
// every entity key with the wire.ContentDigest of its bytes. A snapshot is
// immutable, so the view is consistent with its version.
func (s *Snapshot) Content(nodeID string) wire.ContentView {
	v := wire.ContentView{NodeID: nodeID, Version: s.Version, Hash: s.Hash.String(), Entities: make(map[string]string, s.Len())}
	s.ForEach(func(key string, value []byte) bool {
		d, err := wire.ContentDigest(value)
		if err != nil {
			sum := sha256.Sum256(value)
			d = InvalidDigestPrefix + hex.EncodeToString(sum[:])
		}
		v.Entities[key] = d
		return true
	})
	return v
}
