package wire

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
)

// TestProduceBytesIsKafkaGosMeasure: a kafka-go Writer refuses a message
// exactly when its ProduceBytes exceeds BatchBytes (checked before any
// network I/O).
func TestProduceBytesIsKafkaGosMeasure(t *testing.T) {
	msgs := []kafka.Message{
		{Value: []byte("v")},
		{Key: []byte("services/x"), Value: []byte(strings.Repeat("a", 300))},
		{Key: []byte("k"), Value: make([]byte, 70_000), Headers: DeltaHeader{Schema: 1, Version: 1 << 40, Count: 3, Tx: 9}.Headers()},
		{Key: []byte("k"), Headers: []kafka.Header{{Key: strings.Repeat("h", 200), Value: make([]byte, 20_000)}, {Key: "e"}}},
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for i, m := range msgs {
		n := ProduceBytes(m)
		w := &kafka.Writer{Addr: kafka.TCP("127.0.0.1:1"), Topic: "t", BatchBytes: int64(n) - 1}
		var tooLarge kafka.MessageTooLargeError
		if err := w.WriteMessages(ctx, m); !errors.As(err, &tooLarge) {
			t.Errorf("message %d: BatchBytes %d: err = %v, want MessageTooLargeError", i, n-1, err)
		}
		w.BatchBytes = int64(n)
		if err := w.WriteMessages(ctx, m); errors.As(err, &tooLarge) {
			t.Errorf("message %d: BatchBytes %d (ProduceBytes): refused as too large", i, n)
		}
	}
}

func TestLimitsFitTheBroker(t *testing.T) {
	// One record at the limit, with its varints and headers, in one batch.
	if b := 61 + MaxRecordBytes + 36 + 10*8; b > BrokerMaxMessageBytes {
		t.Errorf("a batch of one record at MaxRecordBytes takes %d bytes > %d", b, BrokerMaxMessageBytes)
	}
	// A full produce request encodes under the broker's limit.
	if b := 61 + MaxProduceBytes + 14*MaxProduceRecords; b > BrokerMaxMessageBytes {
		t.Errorf("a produce request at the bounds takes %d bytes > %d", b, BrokerMaxMessageBytes)
	}
	// The largest record fits one produce request.
	big := kafka.Message{Key: make([]byte, 100), Value: make([]byte, MaxRecordBytes-100-MaxDeltaHeaderBytes),
		Headers: DeltaHeader{Schema: SchemaVersion, Version: 1<<64 - 1, Index: 1<<63 - 2, Count: 1<<63 - 1, Hash: Hash(1<<64 - 1), Tx: 1<<64 - 1}.Headers()}
	if n := ProduceBytes(big); n > MaxProduceBytes {
		t.Errorf("a record at MaxRecordBytes measures %d > MaxProduceBytes %d", n, MaxProduceBytes)
	}
	if MaxDeltaHeaderBytes < 100 || MaxDeltaHeaderBytes > 300 {
		t.Errorf("MaxDeltaHeaderBytes = %d", MaxDeltaHeaderBytes)
	}
}

// TestEncodeChangeKeepsHTML: the event carries the canonical entity byte
// for byte (json.Marshal would turn each "<" into six bytes).
func TestEncodeChangeKeepsHTML(t *testing.T) {
	entity := `{"custom_id":"<a&b>","id":"0c4d0fb5-3a51-4a5c-9a59-1f0c8b0a6f11","x":"\u2028"}`
	ev := ChangeEvent{Schema: SchemaVersion, Tx: 7, Index: 0, Count: 1, Op: OpUpsert, Type: TypeConsumer,
		ID: "0c4d0fb5-3a51-4a5c-9a59-1f0c8b0a6f11", Entity: json.RawMessage(entity)}
	v, err := EncodeChange(ev)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(v), entity) || strings.HasSuffix(string(v), "\n") {
		t.Fatalf("EncodeChange = %s; want the entity verbatim, no newline", v)
	}
	back, err := DecodeChange([]byte(Key(ev.Type, ev.ID)), v)
	if err != nil {
		t.Fatal(err)
	}
	if string(back.Entity) != entity || back.Tx != 7 {
		t.Fatalf("decoded %+v", back)
	}
}

func TestCheckChangeSize(t *testing.T) {
	id := "0c4d0fb5-3a51-4a5c-9a59-1f0c8b0a6f11"
	mk := func(n int) ChangeEvent {
		return ChangeEvent{Schema: SchemaVersion, Op: OpUpsert, Type: TypeConsumer, ID: id,
			Entity: json.RawMessage(`{"custom_id":"` + strings.Repeat("<", n) + `","id":"` + id + `"}`)}
	}
	// Find the largest entity that passes: its records, encoded the way
	// they are published, are within MaxRecordBytes.
	lo, hi := 0, MaxRecordBytes
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if CheckChangeSize(mk(mid)) == nil {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	ev := mk(lo)
	if err := CheckChangeSize(mk(lo + 1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("one byte more: %v, want ErrTooLarge", err)
	}
	ev.Tx, ev.Index, ev.Count = 1<<64-1, 1<<31-2, 1<<31-1
	v, err := EncodeChange(ev)
	if err != nil {
		t.Fatal(err)
	}
	key := []byte(Key(ev.Type, ev.ID))
	if n := RecordBytes(key, v, nil); n > MaxRecordBytes {
		t.Errorf("cp.changes record of an accepted change: %d bytes > %d", n, MaxRecordBytes)
	}
	hdr := DeltaHeader{Schema: SchemaVersion, Version: 1<<64 - 1, Index: 1<<63 - 2, Count: 1<<63 - 1, Hash: Hash(1<<64 - 1), Tx: 1<<64 - 1}.Headers()
	hdr = append(hdr, kafka.Header{Key: "dp-repair", Value: []byte("1")})
	if n := RecordBytes(key, ev.Entity, hdr); n > MaxRecordBytes {
		t.Errorf("dp.deltas record of an accepted change: %d bytes > %d", n, MaxRecordBytes)
	}
	if lo < 990_000 {
		t.Errorf("largest accepted entity has %d '<'; the envelope costs too much", lo)
	}
}
