package sequencer

import (
	"fmt"
	"testing"
)

// FuzzAssembler: any sequence of cp.changes records (transactions in any
// order, duplicates, skipped offsets, unreadable and quarantined records,
// a tiny hold buffer) never makes the assembler panic; no transaction with
// accepted events is closed twice, such transactions close in strictly
// increasing order (every closed one, within one assembler), and one closed as complete has all its events. Each
// input byte is one record: bits 0-2 the tx (1..8), bit 3 the index (of
// count 2 for even tx, 1 for odd), bit 4 skipped offsets before it, bits
// 5-6 3 unreadable, 2 an unknown type, else a valid event.
func FuzzAssembler(f *testing.F) {
	f.Add([]byte{0, 1, 9, 2, 3})
	f.Add([]byte{2, 3, 11, 0, 1, 9, 2, 3, 11})
	f.Add([]byte{16 | 2, 96, 3, 64 | 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		type rec struct {
			off int64
			in  Input
		}
		var log []rec
		off := int64(0)
		for _, b := range data {
			if b&16 != 0 {
				off += 2
			}
			tx := uint64(b&7) + 1
			count := 1 + int(tx+1)%2
			idx := int(b>>3&1) % count
			typ := "services"
			if b>>5&3 == 2 {
				typ = "widgets"
			}
			id := fmt.Sprintf("t%d-%d", tx, idx)
			val := fmt.Sprintf(`{"schema":1,"tx":%d,"index":%d,"count":%d,"op":"upsert","type":%q,"id":%q,"entity":{"id":%q}}`, tx, idx, count, typ, id, id)
			if b>>5&3 == 3 {
				val = "{garbage"
			}
			log = append(log, rec{off, Input{Offset: off, Key: []byte(typ + "/" + id), Value: []byte(val)}})
			off++
		}
		var processed uint64
		published := map[uint64]bool{}
		commit := int64(-1)
		newAsm := func(start int64) *Assembler {
			a := NewAssembler(1 << 20)
			a.MaxHeldBytes = 400
			a.Start(start)
			return a
		}
		a := newAsm(0)
		var lastClosed uint64 // by this assembler
		for i, rereads := 0, 0; i < len(log); i++ {
			if log[i].off <= commit {
				continue
			}
			st := a.Offer(log[i].in, processed)
			for _, tx := range st.Closed {
				if tx.ID <= lastClosed {
					t.Fatalf("tx %d closed after tx %d", tx.ID, lastClosed)
				}
				lastClosed = tx.ID
				if tx.ID <= processed && len(tx.Events) > 0 {
					t.Fatalf("tx %d closed after tx %d", tx.ID, processed)
				}
				if !tx.Partial && !tx.Complete() {
					t.Fatalf("tx %d closed with %d of %d events", tx.ID, tx.Arrived, tx.Count)
				}
				if len(tx.Events) > 0 {
					if published[tx.ID] {
						t.Fatalf("tx %d published twice", tx.ID)
					}
					published[tx.ID] = true
					processed = tx.ID
				}
			}
			commit = max(commit, st.Commit)
			if st.Reread {
				if rereads++; rereads > len(log) {
					t.Fatal("rereads do not end")
				}
				a, lastClosed = newAsm(commit+1), 0
				i = -1
			}
		}
	})
}
