// Package store keeps a data plane's configuration durable on local disk: the
// entities as they arrived on dp.deltas and the position they correspond to
// (version, content hash, next Kafka offset). Every write is one bbolt
// transaction, so a batch and its version become durable together or not at
// all.
package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/deltaplane/deltaplane/shared/wire"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketEntities = []byte("entities")
	bucketMeta     = []byte("meta")
	keyMeta        = []byte("position")
	// bucketAttempts counts the attempts at handling a batch, keyed by the
	// batch's first offset (8 bytes, big endian), so that a batch whose
	// handling crashes the process is recognised after a restart.
	bucketAttempts = []byte("attempts")
)

// Meta is the position of the stored configuration.
type Meta struct {
	Version    uint64    `json:"version"`
	Hash       wire.Hash `json:"hash"`
	NextOffset int64     `json:"next_offset"` // first dp.deltas offset not yet applied
	LastApply  time.Time `json:"last_apply"`
	// CaughtUp is the last time the data plane had read the topic up to its
	// high-water mark; tombstones written after it may since have been removed
	// by compaction once delete.retention.ms has passed.
	CaughtUp time.Time `json:"caught_up"`
	// Complete is true once a whole configuration has been stored.
	Complete bool `json:"complete"`
	// Topic is the topic NextOffset belongs to (dp.deltas or dp.full).
	Topic string `json:"topic"`
}

// Change is one entity write: Value nil deletes the key.
type Change struct {
	Key   string
	Value []byte
}

// Bolt is the bbolt implementation of the data plane's store.
type Bolt struct {
	db  *bolt.DB
	dir string
}

// Options tune Open; the zero value is durable (fsync on every commit).
type Options struct {
	NoSync bool // benchmarks only: skip fsync
}

// mmapSize is the address space bbolt maps from the start (virtual
// memory, not resident until pages are read). bbolt grows a smaller map
// during a write transaction by remapping, and before each remap it
// copies every key and value the transaction holds onto the heap: a
// resync of 100k entities into an empty store copied them about 25 times
// (1.2 GB allocated). Stores larger than this still grow by remapping.
const mmapSize = 1 << 30

// Open opens (creating when needed) the store file in dir.
func Open(dir string, opt Options) (*Bolt, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, "config.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: opt.NoSync, InitialMmapSize: mmapSize})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEntities, bucketMeta, bucketAttempts} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		// What an interrupted resync had staged (see Replacement).
		return dropStaging(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init store: %w", err)
	}
	return &Bolt{db: db, dir: dir}, nil
}

// Close closes the file.
func (s *Bolt) Close() error { return s.db.Close() }

// Meta returns the stored position (zero when nothing was stored yet).
func (s *Bolt) Meta() (Meta, error) {
	var m Meta
	err := s.db.View(func(tx *bolt.Tx) error {
		return readMeta(tx, &m)
	})
	return m, err
}

func readMeta(tx *bolt.Tx, m *Meta) error {
	v := tx.Bucket(bucketMeta).Get(keyMeta)
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(v, m); err != nil {
		return fmt.Errorf("decode store meta: %w", err)
	}
	return nil
}

func writeMeta(tx *bolt.Tx, m Meta) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(keyMeta, v)
}

// ForEach calls fn for every stored entity in key order. The value is only
// valid during the call.
func (s *Bolt) ForEach(fn func(key string, value []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEntities).ForEach(func(k, v []byte) error {
			return fn(string(k), v)
		})
	})
}

// Get returns one stored entity, nil when absent.
func (s *Bolt) Get(key string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketEntities).Get([]byte(key)); v != nil {
			out = append([]byte(nil), v...)
		}
		return nil
	})
	return out, err
}

// Apply writes a batch of changes and the new position in one transaction.
func (s *Bolt) Apply(changes []Change, m Meta) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntities)
		for _, c := range changes {
			var err error
			if c.Value == nil {
				err = b.Delete([]byte(c.Key))
			} else {
				err = b.Put([]byte(c.Key), c.Value)
			}
			if err != nil {
				return fmt.Errorf("store %s: %w", c.Key, err)
			}
		}
		if err := clearAttempts(tx); err != nil {
			return err
		}
		return writeMeta(tx, m)
	})
}

// Replace makes entities the whole stored configuration, deleting every
// other key, and records the position, in one transaction. Keys are
// written in key order: bbolt keeps a transaction's new keys in one sorted
// slice per page until it commits, so writing them in a map's order moves
// that slice on every insert (quadratic: 24 s of a 100k-entity resync).
func (s *Bolt) Replace(entities map[string][]byte, m Meta) error {
	keys := make([]string, 0, len(entities))
	for k := range entities {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntities)
		// Keys come in order: fill pages rather than split them in half
		// (bbolt's default), which would double the pages written and
		// the file.
		b.FillPercent = 0.9
		var stale [][]byte
		err := b.ForEach(func(k, _ []byte) error {
			if _, ok := entities[string(k)]; !ok {
				stale = append(stale, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		for _, k := range keys {
			v := entities[k]
			if old := b.Get([]byte(k)); old != nil && string(old) == string(v) {
				continue
			}
			if err := b.Put([]byte(k), v); err != nil {
				return fmt.Errorf("store %s: %w", k, err)
			}
		}
		if err := clearAttempts(tx); err != nil {
			return err
		}
		return writeMeta(tx, m)
	})
}

// SetMeta records a new position without touching entities (for example the
// caught-up time).
func (s *Bolt) SetMeta(update func(*Meta)) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		var m Meta
		if err := readMeta(tx, &m); err != nil {
			return err
		}
		update(&m)
		return writeMeta(tx, m)
	})
}

// BeginAttempt counts one more attempt at handling the batch that starts
// at offset first from the stored position, and returns the count
// including this one. It forgets the counter of every other batch or
// position (they were handled or abandoned). Call it before handling the
// batch, so that an attempt that crashes the process is counted too.
//
// The counter is kept in a file of its own beside the store (attemptsFile),
// written without fsync: it must survive a crash of the process, which the
// kernel's page cache does, not of the machine (after which the batch gets
// one more attempt). A durable bbolt transaction here cost a second commit
// with its fsyncs for every applied batch.
func (s *Bolt) BeginAttempt(first int64) (int, error) {
	key, err := s.attemptKey(first)
	if err != nil {
		return 0, fmt.Errorf("count attempt at offset %d: %w", first, err)
	}
	n := s.attemptsAt(key) + 1
	rec := binary.BigEndian.AppendUint64(key, uint64(n))
	if err := os.WriteFile(filepath.Join(s.dir, attemptsFile), rec, 0o600); err != nil {
		return 0, fmt.Errorf("count attempt at offset %d: %w", first, err)
	}
	return n, nil
}

// Attempts returns the counted attempts at the batch starting at first
// from the stored position.
func (s *Bolt) Attempts(first int64) (int, error) {
	key, err := s.attemptKey(first)
	if err != nil {
		return 0, err
	}
	return s.attemptsAt(key), nil
}

// attemptsFile holds the attempt counter: the batch's first offset, the
// stored version and next offset it was counted at, and the count (8 bytes
// each, big endian).
const attemptsFile = "attempts"

// attemptKey is the counter's key for a batch starting at first: a counter
// counted at another position (the store has moved on since) does not
// match, so writing a batch, a resync or a skip forgets it.
func (s *Bolt) attemptKey(first int64) ([]byte, error) {
	m, err := s.Meta()
	if err != nil {
		return nil, err
	}
	key := make([]byte, 0, 32)
	key = binary.BigEndian.AppendUint64(key, uint64(first))
	key = binary.BigEndian.AppendUint64(key, m.Version)
	return binary.BigEndian.AppendUint64(key, uint64(m.NextOffset)), nil
}

// attemptsAt is the count kept for key (0: none, or another key's).
func (s *Bolt) attemptsAt(key []byte) int {
	rec, err := os.ReadFile(filepath.Join(s.dir, attemptsFile))
	if err != nil || len(rec) != len(key)+8 || string(rec[:len(key)]) != string(key) {
		return 0
	}
	return int(binary.BigEndian.Uint64(rec[len(key):]))
}

// Skip records a new position without the batch it passes (a batch
// quarantined as poison) and forgets the attempt counters, in one
// transaction.
func (s *Bolt) Skip(m Meta) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if err := clearAttempts(tx); err != nil {
			return err
		}
		return writeMeta(tx, m)
	})
}

func clearAttempts(tx *bolt.Tx) error {
	b := tx.Bucket(bucketAttempts)
	var keys [][]byte
	if err := b.ForEach(func(k, _ []byte) error {
		keys = append(keys, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
