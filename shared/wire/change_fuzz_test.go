package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
)

// FuzzDecodeChange: no cp.changes record makes DecodeChange panic; a
// rejected record fails with one of Check's sentinel errors (the
// sync-gateway names the quarantine reason after it); an accepted one is
// positioned in its transaction, matches its key, and survives a
// re-encoding unchanged.
func FuzzDecodeChange(f *testing.F) {
	f.Add([]byte("services/a"), []byte(`{"schema":1,"tx":1,"index":0,"count":1,"op":"upsert","type":"services","id":"a","entity":{"id":"a"}}`))
	f.Add([]byte("routes/r"), []byte(`{"schema":1,"tx":7,"index":1,"count":2,"op":"delete","type":"routes","id":"r"}`))
	f.Add([]byte("services/a"), []byte(`{"schema":1,"tx":1,"index":0,"count":1,"op":"upsert","type":"services","id":"a","entity":{"id":"b"}}`))
	f.Add([]byte("x"), []byte(`{`))
	sentinels := []error{ErrSchema, ErrEntityType, ErrKey, ErrOp, ErrBatch, ErrEntity}
	f.Fuzz(func(t *testing.T, key, value []byte) {
		ev, err := DecodeChange(key, value)
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error %v is none of Check's", err)
		}
		if ev.Tx == 0 || ev.Index < 0 || ev.Index >= ev.Count || !KnownType(ev.Type) || string(key) != Key(ev.Type, ev.ID) {
			t.Fatalf("accepted %+v for key %q", ev, key)
		}
		if (ev.Op == OpDelete) != (len(ev.Entity) == 0) {
			t.Fatalf("accepted %s with entity %q", ev.Op, ev.Entity)
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", ev, err)
		}
		ev2, err := DecodeChange(key, again)
		if err != nil {
			t.Fatalf("re-encoded event rejected: %v\n%s", err, again)
		}
		var c1, c2 bytes.Buffer
		json.Compact(&c1, ev.Entity)
		json.Compact(&c2, ev2.Entity)
		if ev.Schema != ev2.Schema || ev.Tx != ev2.Tx || ev.Index != ev2.Index || ev.Count != ev2.Count ||
			ev.Op != ev2.Op || ev.Type != ev2.Type || ev.ID != ev2.ID || !bytes.Equal(c1.Bytes(), c2.Bytes()) {
			t.Fatalf("round trip changed the event: %+v %s -> %+v %s", ev, c1.Bytes(), ev2, c2.Bytes())
		}
	})
}
