package wire

import (
	"errors"
	"testing"
)

func TestChangeEventCheck(t *testing.T) {
	ok := ChangeEvent{Schema: 1, Tx: 3, Index: 0, Count: 1, Op: OpUpsert, Type: TypeService, ID: "a", Entity: []byte(`{"id":"a"}`)}
	cases := []struct {
		name string
		key  string
		mod  func(*ChangeEvent)
		want error
	}{
		{"valid upsert", "services/a", func(*ChangeEvent) {}, nil},
		{"valid delete", "services/a", func(e *ChangeEvent) { e.Op = OpDelete; e.Entity = nil }, nil},
		{"newer schema", "services/a", func(e *ChangeEvent) { e.Schema = 2 }, ErrSchema},
		{"unknown type", "widgets/a", func(e *ChangeEvent) { e.Type = "widgets" }, ErrEntityType},
		{"wrong key", "services/b", func(*ChangeEvent) {}, ErrKey},
		{"bad op", "services/a", func(e *ChangeEvent) { e.Op = "merge" }, ErrOp},
		{"index past count", "services/a", func(e *ChangeEvent) { e.Index = 1 }, ErrBatch},
		{"no tx", "services/a", func(e *ChangeEvent) { e.Tx = 0 }, ErrBatch},
		{"entity id differs", "services/a", func(e *ChangeEvent) { e.Entity = []byte(`{"id":"b"}`) }, ErrEntity},
		{"entity not an object", "services/a", func(e *ChangeEvent) { e.Entity = []byte(`[1]`) }, ErrEntity},
		{"delete with entity", "services/a", func(e *ChangeEvent) { e.Op = OpDelete }, ErrEntity},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := ok
			c.mod(&ev)
			err := ev.Check(c.key)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("Check = %v, want %v", err, c.want)
			}
		})
	}
}

func TestDecodeChangeRejectsBadJSON(t *testing.T) {
	if _, err := DecodeChange([]byte("services/a"), []byte("{not json")); !errors.Is(err, ErrEntity) {
		t.Fatalf("err = %v, want ErrEntity", err)
	}
}

func TestDeltaHeaderRoundTrip(t *testing.T) {
	h := DeltaHeader{Schema: 1, Version: 42, Index: 2, Count: 3, Hash: 0xdeadbeef, Tx: 7}
	got, err := DecodeDeltaHeader(h.Headers())
	if err != nil || got != h {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, h)
	}
	if !got.Last() {
		t.Fatal("index 2 of 3 should be last")
	}
	bad := h.Headers()[:5]
	if _, err := DecodeDeltaHeader(bad); !errors.Is(err, ErrDeltaHeader) {
		t.Fatalf("missing header: err = %v", err)
	}
	h.Schema = 2
	if _, err := DecodeDeltaHeader(h.Headers()); !errors.Is(err, ErrSchema) {
		t.Fatalf("newer schema: err = %v", err)
	}
}

func TestHashIsOrderIndependentAndReversible(t *testing.T) {
	a := EntityHash("services/a", []byte(`{"id":"a"}`))
	b := EntityHash("routes/b", []byte(`{"id":"b"}`))
	if Hash(0).Add(a).Add(b) != Hash(0).Add(b).Add(a) {
		t.Fatal("sum depends on order")
	}
	if Hash(0).Add(a).Add(b).Sub(a) != Hash(0).Add(b) {
		t.Fatal("Sub does not undo Add")
	}
	if EntityHash("services/a", []byte(`{"id":"a"}`)) == EntityHash("services/a", []byte(`{"id":"a","x":1}`)) {
		t.Fatal("different content, same hash")
	}
	p, err := ParseHash(a.String())
	if err != nil || p != a {
		t.Fatalf("ParseHash(String) = %v, %v", p, err)
	}
}
