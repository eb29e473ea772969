package wire

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/segmentio/kafka-go"
)

// Header names of a dp.deltas record.
const (
	HeaderSchema  = "dp-schema"
	HeaderVersion = "dp-version"
	HeaderIndex   = "dp-index"
	HeaderCount   = "dp-count"
	HeaderHash    = "dp-hash"
	HeaderTx      = "dp-tx"
)

// DeltaHeader is the metadata of a dp.deltas record.
type DeltaHeader struct {
	Schema  int
	Version uint64 // configuration version this record belongs to (from 1, gap-free)
	Index   int    // position of the record in its version's batch
	Count   int    // records in the batch
	Hash    Hash   // content hash of the whole configuration after the batch
	Tx      uint64 // the admin transaction the batch came from
}

// Last reports whether the record closes its batch.
func (h DeltaHeader) Last() bool { return h.Index == h.Count-1 }

// Headers encodes h as Kafka record headers.
func (h DeltaHeader) Headers() []kafka.Header {
	return []kafka.Header{
		{Key: HeaderSchema, Value: []byte(strconv.Itoa(h.Schema))},
		{Key: HeaderVersion, Value: []byte(strconv.FormatUint(h.Version, 10))},
		{Key: HeaderIndex, Value: []byte(strconv.Itoa(h.Index))},
		{Key: HeaderCount, Value: []byte(strconv.Itoa(h.Count))},
		{Key: HeaderHash, Value: []byte(h.Hash.String())},
		{Key: HeaderTx, Value: []byte(strconv.FormatUint(h.Tx, 10))},
	}
}

// ErrDeltaHeader is returned for a dp.deltas record whose headers are
// missing, malformed or of an unknown schema.
var ErrDeltaHeader = errors.New("bad delta record header")

// DecodeDeltaHeader reads and checks the headers of a dp.deltas record.
func DecodeDeltaHeader(headers []kafka.Header) (DeltaHeader, error) {
	var h DeltaHeader
	seen := 0
	for _, hd := range headers {
		v := string(hd.Value)
		var err error
		switch hd.Key {
		case HeaderSchema:
			h.Schema, err = strconv.Atoi(v)
		case HeaderVersion:
			h.Version, err = strconv.ParseUint(v, 10, 64)
		case HeaderIndex:
			h.Index, err = strconv.Atoi(v)
		case HeaderCount:
			h.Count, err = strconv.Atoi(v)
		case HeaderHash:
			h.Hash, err = ParseHash(v)
		case HeaderTx:
			h.Tx, err = strconv.ParseUint(v, 10, 64)
		default:
			continue
		}
		if err != nil {
			return h, fmt.Errorf("%w: %s=%q: %v", ErrDeltaHeader, hd.Key, v, err)
		}
		seen++
	}
	switch {
	case seen != 6:
		return h, fmt.Errorf("%w: want 6 dp-* headers, have %d", ErrDeltaHeader, seen)
	case h.Schema != SchemaVersion:
		return h, fmt.Errorf("%w: %w %d", ErrDeltaHeader, ErrSchema, h.Schema)
	case h.Version == 0 || h.Count < 1 || h.Index < 0 || h.Index >= h.Count:
		return h, fmt.Errorf("%w: version %d index %d count %d", ErrDeltaHeader, h.Version, h.Index, h.Count)
	}
	return h, nil
}
