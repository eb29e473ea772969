package wire

// # dp.full (schema 1): the full-sync baseline
//
// In SYNC_MODE=full the sync-gateway publishes, after a change (bursts
// coalesced, skipped when the content hash is unchanged), the whole
// configuration instead of deltas: a FullConfig as JSON, gzip-compressed,
// cut into chunks of at most FullChunkBytes. Chunk i of the snapshot of
// version v is one record on dp.full (compacted, one partition):
//
//   - key FullKey(v, i) = "snapshot/<v>/<i>"
//   - value: bytes [i*FullChunkBytes, (i+1)*FullChunkBytes) of the gzip stream
//   - headers: a DeltaHeader with Version v, Index i, Count = number of
//     chunks, Hash = the configuration's content hash, Tx = the last admin
//     transaction in it.
//
// Once every chunk of snapshot v is acknowledged, the publisher writes
// tombstones (nil value, headers of the old snapshot) for the chunks of the
// snapshot it replaces, so compaction keeps only the newest snapshots.
//
// Reassembly rules for a data plane (FullAssembler implements them): read
// dp.full in offset order, ignore tombstones, collect chunks per version,
// and apply a version only when chunks 0..Count-1 of it are all present with
// the same Count and Hash, as one replacement of the whole configuration.
// Apply it only if its version is above the applied one (older or equal
// versions are no-ops; versions may jump, since bursts are coalesced). A
// fresh data plane reads from the earliest offset to the high water mark and
// applies the highest complete version; it never starts from "latest".
//
// A snapshot whose gzip stream inflates past FullMaxInflatedBytes is
// refused (ErrFullTooLarge), whatever its compressed size: a reader never
// inflates more than that for one snapshot.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// FullChunkBytes is the largest chunk value on dp.full, well under Kafka's
// default 1 MiB record limit.
const FullChunkBytes = 900_000

// FullMaxInflatedBytes is the most a dp.full snapshot may inflate to: 256
// MiB of JSON, about eight times the largest configuration the design
// plans for (30k entities, 30 MB). DecodeFull stops inflating past it and
// fails with ErrFullTooLarge, so a gzip bomb (a few hundred KB that would
// inflate to gigabytes) costs a data plane at most this much memory. A
// larger configuration needs incremental mode.
const FullMaxInflatedBytes = 256 << 20

// ErrFullTooLarge is returned for a snapshot that inflates past
// FullMaxInflatedBytes.
var ErrFullTooLarge = errors.New("full snapshot inflates past the limit")

// inflateLimit fails a read once more than max bytes came through.
type inflateLimit struct {
	r        io.Reader
	read     int64
	maxBytes int64
}

func (l *inflateLimit) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.read += int64(n)
	if l.read > l.maxBytes {
		return n, fmt.Errorf("%w of %d bytes (FullMaxInflatedBytes)", ErrFullTooLarge, l.maxBytes)
	}
	return n, err
}

// FullConfig is one whole configuration.
type FullConfig struct {
	Schema  int    `json:"schema"`
	Version uint64 `json:"version"`
	Tx      uint64 `json:"tx"`
	Hash    string `json:"hash"` // Hash.String() of the configuration
	// Config maps an entity type to its entities (each exactly the JSON
	// carried on cp.changes), sorted by key.
	Config map[string][]json.RawMessage `json:"config"`
}

// FullKey is the record key of chunk index of the snapshot of version.
func FullKey(version uint64, index int) string {
	return "snapshot/" + strconv.FormatUint(version, 10) + "/" + strconv.Itoa(index)
}

// ParseFullKey is the inverse of FullKey.
func ParseFullKey(key string) (version uint64, index int, err error) {
	rest, ok := strings.CutPrefix(key, "snapshot/")
	v, i, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return 0, 0, fmt.Errorf("full key %q: want snapshot/<version>/<index>", key)
	}
	if version, err = strconv.ParseUint(v, 10, 64); err != nil {
		return 0, 0, fmt.Errorf("full key %q: %w", key, err)
	}
	if index, err = strconv.Atoi(i); err != nil {
		return 0, 0, fmt.Errorf("full key %q: %w", key, err)
	}
	return version, index, nil
}

// EncodeFull serialises, compresses and chunks a configuration.
func EncodeFull(c FullConfig) ([][]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	// Written by hand so that every entity keeps its exact bytes (the
	// content hash is over them); encoding/json would re-compact them.
	head, err := json.Marshal(struct {
		Schema  int    `json:"schema"`
		Version uint64 `json:"version"`
		Tx      uint64 `json:"tx"`
		Hash    string `json:"hash"`
	}{c.Schema, c.Version, c.Tx, c.Hash})
	if err != nil {
		return nil, fmt.Errorf("encode full config: %w", err)
	}
	zw.Write(head[:len(head)-1])
	zw.Write([]byte(`,"config":{`))
	types := make([]string, 0, len(c.Config))
	for t := range c.Config {
		types = append(types, t)
	}
	sort.Strings(types)
	for i, t := range types {
		if i > 0 {
			zw.Write([]byte{','})
		}
		name, _ := json.Marshal(t)
		zw.Write(name)
		zw.Write([]byte{':', '['})
		for j, e := range c.Config[t] {
			if j > 0 {
				zw.Write([]byte{','})
			}
			if !json.Valid(e) {
				return nil, fmt.Errorf("encode full config: %s entity %d is not JSON", t, j)
			}
			zw.Write(e)
		}
		zw.Write([]byte{']'})
	}
	zw.Write([]byte("}}\n"))
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress full config: %w", err)
	}
	b := buf.Bytes()
	var chunks [][]byte
	for len(b) > FullChunkBytes {
		chunks = append(chunks, b[:FullChunkBytes:FullChunkBytes])
		b = b[FullChunkBytes:]
	}
	return append(chunks, b), nil
}

// DecodeFull is the inverse of EncodeFull; chunks are in index order. It
// refuses a snapshot that inflates past FullMaxInflatedBytes
// (ErrFullTooLarge).
func DecodeFull(chunks [][]byte) (FullConfig, error) {
	var c FullConfig
	rs := make([]io.Reader, len(chunks))
	for i, ch := range chunks {
		rs[i] = bytes.NewReader(ch)
	}
	zr, err := gzip.NewReader(io.MultiReader(rs...))
	if err != nil {
		return c, fmt.Errorf("decompress full config: %w", err)
	}
	if err := json.NewDecoder(&inflateLimit{r: zr, maxBytes: FullMaxInflatedBytes}).Decode(&c); err != nil {
		return c, fmt.Errorf("decode full config: %w", err)
	}
	if c.Schema != SchemaVersion {
		return c, fmt.Errorf("full config: %w %d", ErrSchema, c.Schema)
	}
	return c, nil
}

// ErrFullChunk is returned for a dp.full record that does not fit the rules.
var ErrFullChunk = errors.New("bad full snapshot chunk")

// FullAssembler reassembles snapshots from dp.full records read in offset
// order.
type FullAssembler struct {
	applied uint64
	parts   map[uint64]*fullParts
}

type fullParts struct {
	count  int
	hash   Hash
	chunks map[int][]byte
}

// NewFullAssembler starts above version applied (0 for a fresh data plane).
func NewFullAssembler(applied uint64) *FullAssembler {
	return &FullAssembler{applied: applied, parts: map[uint64]*fullParts{}}
}

// FullChunks is a snapshot whose chunks have all arrived, not decoded yet.
type FullChunks struct {
	Version uint64
	Hash    Hash
	chunks  [][]byte
}

// Add takes the next dp.full record. It returns the snapshot when this
// record completes one newer than the last returned; otherwise nil. It is
// Collect followed by Decode.
func (a *FullAssembler) Add(key string, value []byte, h DeltaHeader) (*FullConfig, error) {
	p, err := a.Collect(key, value, h)
	if err != nil || p == nil {
		return nil, err
	}
	return a.Decode(p)
}

// Collect takes the next dp.full record and returns the snapshot it
// completes, still compressed, or nil. A reader catching up on a log that
// holds several snapshots decodes only the newest it completes (Decode),
// so its cost does not grow with the number of snapshots behind it.
func (a *FullAssembler) Collect(key string, value []byte, h DeltaHeader) (*FullChunks, error) {
	if len(value) == 0 {
		return nil, nil // tombstone of a replaced snapshot
	}
	v, i, err := ParseFullKey(key)
	if err != nil || v != h.Version || i != h.Index || h.Count < 1 || i < 0 || i >= h.Count {
		return nil, fmt.Errorf("%w: key %q, header version %d index %d", ErrFullChunk, key, h.Version, h.Index)
	}
	if v <= a.applied {
		return nil, nil
	}
	p := a.parts[v]
	if p == nil || p.count != h.Count || p.hash != h.Hash {
		p = &fullParts{count: h.Count, hash: h.Hash, chunks: map[int][]byte{}}
		a.parts[v] = p
	}
	p.chunks[i] = append([]byte(nil), value...)
	if len(p.chunks) < p.count {
		return nil, nil
	}
	chunks := make([][]byte, p.count)
	for j := range chunks {
		chunks[j] = p.chunks[j]
	}
	for old := range a.parts {
		if old <= v {
			delete(a.parts, old)
		}
	}
	return &FullChunks{Version: v, Hash: h.Hash, chunks: chunks}, nil
}

// Decode decompresses and checks a collected snapshot. It returns nil for a
// snapshot not newer than the last one decoded.
func (a *FullAssembler) Decode(p *FullChunks) (*FullConfig, error) {
	if p.Version <= a.applied {
		return nil, nil
	}
	c, err := DecodeFull(p.chunks)
	if err != nil {
		return nil, fmt.Errorf("%w: version %d: %w", ErrFullChunk, p.Version, err)
	}
	if c.Version != p.Version || c.Hash != p.Hash.String() {
		return nil, fmt.Errorf("%w: version %d carries version %d hash %s, header hash %s", ErrFullChunk, p.Version, c.Version, c.Hash, p.Hash)
	}
	a.applied = p.Version
	return &c, nil
}

// Entities flattens a configuration into record key -> entity JSON, the form
// every content hash is computed from.
func (c FullConfig) Entities() (map[string][]byte, error) {
	out := map[string][]byte{}
	types := make([]string, 0, len(c.Config))
	for t := range c.Config {
		types = append(types, t)
	}
	sort.Strings(types)
	for _, t := range types {
		for _, e := range c.Config[t] {
			var id struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(e, &id); err != nil || id.ID == "" {
				return nil, fmt.Errorf("full config: %s entity without id", t)
			}
			out[Key(t, id.ID)] = e
		}
	}
	return out, nil
}
