package wire

import (
	"errors"
	"fmt"
	"math"

	"github.com/segmentio/kafka-go"
)

// Record size limits of cp.changes and dp.deltas, in one place: admin-api
// refuses a write whose records would exceed them, its relay sizes its
// produce requests with them, and the sync-gateway quarantines a cp.changes
// record over them.
//
// The broker accepts a record batch up to the topic's max.message.bytes;
// deltaplane's topics keep Kafka's default, BrokerMaxMessageBytes, counted
// on the encoded batch: a 61-byte batch header, then per record its key,
// value and headers and at most 36 bytes of varints and attributes (plus
// 10 per header).
const BrokerMaxMessageBytes = 1_048_588

// MaxRecordBytes is the most a cp.changes or dp.deltas record may take,
// measured by RecordBytes (key, value, header keys and values). A batch
// holding one such record is at most MaxRecordBytes + 61 + 36 + 10 per
// header bytes, far below BrokerMaxMessageBytes.
const MaxRecordBytes = 1_000_000

// MaxProduceRecords and MaxProduceBytes bound one produce request of a
// writer that must keep its records in order (admin-api's relay), the
// latter measured by ProduceBytes. kafka-go's estimate of a record is at
// most 14 bytes below its encoding in a record batch, so a request at
// these bounds encodes to at most 61 + MaxProduceBytes + 14 ×
// MaxProduceRecords bytes, under BrokerMaxMessageBytes; and one record of
// MaxRecordBytes always fits.
const (
	MaxProduceRecords = 500
	MaxProduceBytes   = BrokerMaxMessageBytes - 8192
)

// ErrTooLarge is a change whose records would exceed MaxRecordBytes.
var ErrTooLarge = errors.New("record too large")

// RecordBytes is the size of a record counted against MaxRecordBytes.
func RecordBytes(key, value []byte, headers []kafka.Header) int {
	n := len(key) + len(value)
	for _, h := range headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// ProduceBytes is kafka-go's (v0.4) estimate of a message in a produce
// request, the measure its Writer compares with BatchBytes: a writer with
// BatchBytes b sends messages whose ProduceBytes sum to at most b in one
// request.
func ProduceBytes(m kafka.Message) int {
	n := 4 + 1 + 1 + (4 + len(m.Key)) + (4 + len(m.Value)) + 8
	n += varIntLen(int64(len(m.Headers)))
	for _, h := range m.Headers {
		n += varIntLen(int64(len(h.Key))) + len(h.Key) + varIntLen(int64(len(h.Value))) + len(h.Value)
	}
	return n
}

func varIntLen(i int64) int {
	u := uint64((i << 1) ^ (i >> 63))
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

// MaxDeltaHeaderBytes is the most the headers of a dp.deltas record take
// (RecordBytes' measure): the dp-* headers with every number at its widest,
// plus deltaExtraHeaderBytes for the flags a sync-gateway may add (a repair
// version's dp-repair).
var MaxDeltaHeaderBytes = RecordBytes(nil, nil, DeltaHeader{Schema: SchemaVersion, Version: math.MaxUint64,
	Index: math.MaxInt, Count: math.MaxInt, Hash: Hash(math.MaxUint64), Tx: math.MaxUint64}.Headers()) + deltaExtraHeaderBytes

const deltaExtraHeaderBytes = 32

// ChangeRecordBytes is the larger of the two records a change becomes: its
// cp.changes record (the key and EncodeChange of ev with the transaction
// number, index and count at their widest, since they are taken at
// commit) and its dp.deltas record (the key, the entity and the dp-*
// headers at MaxDeltaHeaderBytes).
func ChangeRecordBytes(ev ChangeEvent) (int, error) {
	key := Key(ev.Type, ev.ID)
	ev.Tx, ev.Index, ev.Count = math.MaxUint64, math.MaxInt, math.MaxInt
	v, err := EncodeChange(ev)
	if err != nil {
		return 0, err
	}
	change := RecordBytes([]byte(key), v, nil)
	delta := len(key) + len(ev.Entity) + MaxDeltaHeaderBytes
	return max(change, delta), nil
}

// CheckChangeSize returns ErrTooLarge (wrapped, with the sizes) when a
// change's records would exceed MaxRecordBytes.
func CheckChangeSize(ev ChangeEvent) error {
	n, err := ChangeRecordBytes(ev)
	if err != nil {
		return err
	}
	if n > MaxRecordBytes {
		return fmt.Errorf("%w: %d bytes; the limit is %d", ErrTooLarge, n, MaxRecordBytes)
	}
	return nil
}
