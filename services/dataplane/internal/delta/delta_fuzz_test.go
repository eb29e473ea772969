package delta

import (
	"testing"

	"github.com/deltaplane/deltaplane/shared/wire"
)

// FuzzAssembler feeds the assembler arbitrary sequences of records (each
// three bytes: version offset from the applied one, index, count; headers
// valid as wire.DecodeDeltaHeader lets them through). It never panics,
// and every batch it hands out is the next version, whole: indexes
// 0..Count-1 once each, one Count, one version.
func FuzzAssembler(f *testing.F) {
	f.Add(uint8(0), []byte{1, 0, 1})
	f.Add(uint8(3), []byte{1, 0, 2, 1, 1, 2, 2, 0, 1})
	f.Add(uint8(0), []byte{1, 1, 3, 1, 0, 3, 1, 2, 3, 1, 1, 3})
	f.Add(uint8(5), []byte{0, 0, 1, 2, 0, 1, 1, 0, 2, 1, 0, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, start uint8, data []byte) {
		a := NewAssembler(uint64(start))
		for off := 0; off+3 <= len(data); off += 3 {
			count := int(data[off+2]%8) + 1
			index := int(data[off+1]) % count
			version := a.Applied() + uint64(data[off]%4)
			if version == 0 {
				version = 1
			}
			before := a.Applied()
			r := Record{Key: "k", Offset: int64(off), Header: wire.DeltaHeader{Schema: wire.SchemaVersion, Version: version, Index: index, Count: count}}
			out, batch := a.Add(r)
			switch out {
			case Complete:
				if len(batch) == 0 || len(batch) != batch[len(batch)-1].Header.Count {
					t.Fatalf("batch of %d records for count %d", len(batch), count)
				}
				for i, b := range batch {
					if b.Header.Index != i || b.Header.Count != len(batch) || b.Header.Version != before+1 {
						t.Fatalf("record %d of the batch of version %d: %+v", i, before+1, b.Header)
					}
				}
				if a.Applied() != before+1 || a.Pending() != 0 {
					t.Fatalf("after version %d: applied %d pending %d", before+1, a.Applied(), a.Pending())
				}
			case Duplicate, Buffered, Repeated:
				if batch != nil || a.Applied() != before {
					t.Fatalf("%s moved the applied version or returned a batch", out)
				}
			case Gap:
				if batch != nil || a.Pending() != 0 {
					t.Fatalf("gap returned a batch or kept records")
				}
			default:
				t.Fatalf("outcome %d", out)
			}
		}
	})
}
