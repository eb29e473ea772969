package wire

import (
	"testing"

	"github.com/segmentio/kafka-go"
)

// FuzzDecodeDeltaHeader: any header values decode or fail with
// ErrDeltaHeader, never panic; what decodes satisfies the checks the data
// plane relies on and survives a round trip through Headers.
func FuzzDecodeDeltaHeader(f *testing.F) {
	good := DeltaHeader{Schema: SchemaVersion, Version: 7, Index: 1, Count: 3, Hash: 0xabc, Tx: 9}
	add := func(h []kafka.Header) {
		var v [6]string
		for _, hd := range h {
			switch hd.Key {
			case HeaderSchema:
				v[0] = string(hd.Value)
			case HeaderVersion:
				v[1] = string(hd.Value)
			case HeaderIndex:
				v[2] = string(hd.Value)
			case HeaderCount:
				v[3] = string(hd.Value)
			case HeaderHash:
				v[4] = string(hd.Value)
			case HeaderTx:
				v[5] = string(hd.Value)
			}
		}
		f.Add(v[0], v[1], v[2], v[3], v[4], v[5], uint8(0))
	}
	add(good.Headers())
	f.Add("1", "0", "0", "1", "0000000000000000", "1", uint8(0))
	f.Add("2", "1", "0", "1", "0000000000000000", "1", uint8(0))
	f.Add("1", "1", "-1", "0", "zz", "-3", uint8(0))
	f.Add("1", "18446744073709551616", "3", "3", "00000000000000000", "1", uint8(7))
	f.Fuzz(func(t *testing.T, schema, version, index, count, hash, tx string, drop uint8) {
		all := []kafka.Header{
			{Key: HeaderSchema, Value: []byte(schema)},
			{Key: HeaderVersion, Value: []byte(version)},
			{Key: HeaderIndex, Value: []byte(index)},
			{Key: HeaderCount, Value: []byte(count)},
			{Key: HeaderHash, Value: []byte(hash)},
			{Key: HeaderTx, Value: []byte(tx)},
			{Key: "other", Value: []byte(schema)},
		}
		// drop leaves out some headers (bit i drops header i) or repeats one.
		var hs []kafka.Header
		for i, h := range all {
			if i < 6 && drop&(1<<i) != 0 {
				continue
			}
			hs = append(hs, h)
		}
		if drop&0x40 != 0 {
			hs = append(hs, all[int(drop)%6])
		}
		h, err := DecodeDeltaHeader(hs)
		if err != nil {
			return
		}
		if h.Schema != SchemaVersion || h.Version == 0 || h.Count < 1 || h.Index < 0 || h.Index >= h.Count {
			t.Fatalf("accepted %+v", h)
		}
		again, err := DecodeDeltaHeader(h.Headers())
		if err != nil || again != h {
			t.Fatalf("round trip %+v -> %+v, %v", h, again, err)
		}
	})
}
