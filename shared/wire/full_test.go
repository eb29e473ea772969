package wire

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

func bigConfig(t *testing.T, n int) FullConfig {
	t.Helper()
	c := FullConfig{Schema: 1, Version: 9, Tx: 12, Config: map[string][]json.RawMessage{}}
	var h Hash
	for i := 0; i < n; i++ {
		pad := make([]byte, 400)
		rand.Read(pad)
		// odd spacing and an HTML character: bytes must survive exactly
		e := json.RawMessage(fmt.Sprintf(`{"id": "s%05d", "pad":"%s", "x":"<&>"}`, i, hex.EncodeToString(pad)))
		c.Config[TypeService] = append(c.Config[TypeService], e)
		h = h.Add(EntityHash(Key(TypeService, fmt.Sprintf("s%05d", i)), e))
	}
	c.Hash = h.String()
	return c
}

func TestFullRoundTripKeepsEntityBytes(t *testing.T) {
	c := bigConfig(t, 3000)
	chunks, err := EncodeFull(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) < 2 {
		t.Fatalf("%d chunks, want several", len(chunks))
	}
	for _, ch := range chunks {
		if len(ch) > FullChunkBytes {
			t.Fatalf("chunk of %d bytes", len(ch))
		}
	}
	got, err := DecodeFull(chunks)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 9 || got.Tx != 12 || got.Hash != c.Hash || len(got.Config[TypeService]) != 3000 {
		t.Fatalf("decoded %d entities, version %d", len(got.Config[TypeService]), got.Version)
	}
	for i, e := range got.Config[TypeService] {
		if !bytes.Equal(e, c.Config[TypeService][i]) {
			t.Fatalf("entity %d changed: %s", i, e)
		}
	}
	ents, err := got.Entities()
	if err != nil {
		t.Fatal(err)
	}
	var h Hash
	for k, v := range ents {
		h = h.Add(EntityHash(k, v))
	}
	if h.String() != c.Hash {
		t.Fatalf("hash over decoded entities %s, want %s", h, c.Hash)
	}
}

func TestFullAssembler(t *testing.T) {
	c := bigConfig(t, 3000)
	chunks, _ := EncodeFull(c)
	hash, _ := ParseHash(c.Hash)
	hdr := func(v uint64, i int) DeltaHeader {
		return DeltaHeader{Schema: 1, Version: v, Index: i, Count: len(chunks), Hash: hash, Tx: 12}
	}
	c8 := c
	c8.Version = 8
	chunks8, _ := EncodeFull(c8)

	a := NewFullAssembler(0)
	// an older snapshot, incomplete, then the newer one interleaved
	if got, err := a.Add(FullKey(8, 0), chunks8[0], hdr(8, 0)); got != nil || err != nil {
		t.Fatalf("partial = %v, %v", got, err)
	}
	for i, ch := range chunks {
		got, err := a.Add(FullKey(9, i), ch, hdr(9, i))
		if err != nil {
			t.Fatal(err)
		}
		if (got != nil) != (i == len(chunks)-1) {
			t.Fatalf("chunk %d: complete = %v", i, got != nil)
		}
	}
	// older or equal versions are no-ops; tombstones are ignored
	if got, err := a.Add(FullKey(8, 1), chunks8[1], hdr(8, 1)); got != nil || err != nil {
		t.Fatalf("older = %v, %v", got, err)
	}
	if got, err := a.Add(FullKey(9, 0), nil, hdr(9, 0)); got != nil || err != nil {
		t.Fatalf("tombstone = %v, %v", got, err)
	}
	if _, err := a.Add(FullKey(10, 1), chunks[0], hdr(10, 0)); !errors.Is(err, ErrFullChunk) {
		t.Fatalf("key/header mismatch: err = %v", err)
	}
	// a chunk with wrong content fails the snapshot, not the assembler
	b := NewFullAssembler(0)
	if _, err := b.Add(FullKey(9, 0), []byte("garbage"), DeltaHeader{Schema: 1, Version: 9, Count: 1, Hash: hash}); !errors.Is(err, ErrFullChunk) {
		t.Fatalf("garbage: err = %v", err)
	}
}

func TestFullKeyRoundTrip(t *testing.T) {
	v, i, err := ParseFullKey(FullKey(42, 7))
	if err != nil || v != 42 || i != 7 {
		t.Fatalf("= %d %d %v", v, i, err)
	}
	for _, bad := range []string{"services/a", "snapshot/x/1", "snapshot/1", "snapshot/1/y"} {
		if _, _, err := ParseFullKey(bad); err == nil {
			t.Fatalf("ParseFullKey(%q) accepted", bad)
		}
	}
}

// Collect checks a header's position itself, so a caller that did not run
// DecodeDeltaHeader first gets an error instead of a panic.
func TestFullAssemblerRefusesUncheckedHeaders(t *testing.T) {
	for _, h := range []DeltaHeader{
		{Schema: 1, Version: 2, Index: 0, Count: -1},
		{Schema: 1, Version: 2, Index: 0, Count: 0},
		{Schema: 1, Version: 2, Index: 3, Count: 2},
	} {
		a := NewFullAssembler(0)
		key := FullKey(h.Version, h.Index)
		if _, err := a.Collect(key, []byte("x"), h); err == nil {
			t.Errorf("header %+v accepted", h)
		}
	}
}
