package wire

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// bomb is a gzip stream of one valid snapshot document whose unknown "pad"
// field makes it inflate to more than size bytes, cut into chunks.
func bomb(t testing.TB, size int) [][]byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zw.Write([]byte(`{"schema":1,"version":1,"tx":1,"hash":"0000000000000000","config":{},"pad":"`))
	block := bytes.Repeat([]byte{'a'}, 1<<20)
	for n := 0; n <= size; n += len(block) {
		zw.Write(block)
	}
	zw.Write([]byte(`"}`))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	var chunks [][]byte
	b := buf.Bytes()
	for len(b) > FullChunkBytes {
		chunks = append(chunks, b[:FullChunkBytes])
		b = b[FullChunkBytes:]
	}
	return append(chunks, b)
}

// A dp.full snapshot that inflates past the stated limit is refused (a gzip
// bomb of a few hundred KB must not cost the data plane gigabytes).
func TestDecodeFullRefusesGzipBomb(t *testing.T) {
	chunks := bomb(t, FullMaxInflatedBytes)
	compressed := 0
	for _, c := range chunks {
		compressed += len(c)
	}
	_, err := DecodeFull(chunks)
	if err == nil {
		t.Fatalf("a snapshot of %d compressed bytes inflating past 256 MiB was accepted", compressed)
	}
	if !strings.Contains(err.Error(), "inflates past") || !errors.Is(err, ErrFullTooLarge) {
		t.Fatalf("error %q does not say the snapshot inflates past the limit", err)
	}
}

// fullSeed is a small valid snapshot's chunks.
func fullSeed(t testing.TB) [][]byte {
	e := json.RawMessage(`{"id":"a","host":"h"}`)
	h := EntityHash(Key(TypeService, "a"), e)
	chunks, err := EncodeFull(FullConfig{Schema: SchemaVersion, Version: 3, Tx: 3, Hash: h.String(), Config: map[string][]json.RawMessage{TypeService: {e}}})
	if err != nil {
		t.Fatal(err)
	}
	return chunks
}

// FuzzDecodeFull: any bytes, as one chunk or cut in two, decode or fail
// without panicking; a decoded snapshot flattens or fails cleanly.
func FuzzDecodeFull(f *testing.F) {
	f.Add(fullSeed(f)[0], 5)
	f.Add([]byte{0x1f, 0x8b}, 1)
	f.Add([]byte(`{"schema":1}`), 0)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		chunks := [][]byte{data}
		if cut > 0 && cut < len(data) {
			chunks = [][]byte{data[:cut], data[cut:]}
		}
		c, err := DecodeFull(chunks)
		if err != nil {
			return
		}
		if c.Schema != SchemaVersion {
			t.Fatalf("decoded schema %d", c.Schema)
		}
		_, _ = c.Entities()
	})
}

// FuzzFullAssembler: records with arbitrary keys, values and headers never
// panic the reassembly, and what it returns is a checked snapshot newer
// than anything returned before.
func FuzzFullAssembler(f *testing.F) {
	seed := fullSeed(f)
	f.Add("snapshot/3/0", seed[0], uint64(3), 0, 1, "snapshot/3/0", seed[0], uint64(3), 0, 1)
	f.Add("snapshot/2/1", []byte("x"), uint64(2), 1, 2, "snapshot/2/0", []byte("y"), uint64(2), 0, 2)
	f.Add("snapshot/x/0", []byte{}, uint64(0), -1, 0, "bad", []byte(nil), uint64(1), 0, 1)
	f.Fuzz(func(t *testing.T, k1 string, v1 []byte, ver1 uint64, i1, n1 int, k2 string, v2 []byte, ver2 uint64, i2, n2 int) {
		a := NewFullAssembler(1)
		var last uint64 = 1
		for _, r := range []struct {
			key      string
			val      []byte
			ver      uint64
			idx, cnt int
		}{{k1, v1, ver1, i1, n1}, {k2, v2, ver2, i2, n2}, {k1, v1, ver1, i1, n1}} {
			// As the data plane does: headers are decoded (and checked)
			// before the assembler sees them.
			hd, err := DecodeDeltaHeader(DeltaHeader{Schema: SchemaVersion, Version: r.ver, Index: r.idx, Count: r.cnt}.Headers())
			if err != nil {
				continue
			}
			c, err := a.Add(r.key, r.val, hd)
			if err != nil || c == nil {
				continue
			}
			if c.Version <= last || c.Version != r.ver || c.Schema != SchemaVersion {
				t.Fatalf("returned version %d (schema %d) after %d from a record of version %d", c.Version, c.Schema, last, r.ver)
			}
			last = c.Version
		}
	})
}
