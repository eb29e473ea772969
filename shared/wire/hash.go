package wire

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
)

// Hash is the content hash of a configuration: the sum, modulo 2^64, of the
// EntityHash of every entity in it. A sum is independent of order and is
// updated in O(1) per change: add the new entity's hash, subtract the old
// one's. The sync-gateway carries it on every dp.deltas record and data
// planes compute the same from what they hold.
type Hash uint64

// EntityHash hashes one entity: its record key and its exact JSON bytes as
// carried on dp.deltas.
func EntityHash(key string, value []byte) Hash {
	h := sha256.New()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write(value)
	var sum [sha256.Size]byte
	return Hash(binary.BigEndian.Uint64(h.Sum(sum[:0])))
}

// Add returns the hash with an entity hash added.
func (h Hash) Add(e Hash) Hash { return h + e }

// Sub returns the hash with an entity hash removed.
func (h Hash) Sub(e Hash) Hash { return h - e }

// String is 16 lower-case hex digits.
func (h Hash) String() string { return fmt.Sprintf("%016x", uint64(h)) }

// ParseHash is the inverse of String.
func ParseHash(s string) (Hash, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("hash %q: want 16 hex digits", s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return Hash(v), err
}
