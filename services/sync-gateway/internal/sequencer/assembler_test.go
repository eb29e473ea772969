package sequencer

import (
	"fmt"
	"testing"
)

// A malformed event that claims a transaction far ahead is quarantined and
// must not make the real transactions before it look like duplicates.
func TestForgedFutureTransactionSwallowsNothing(t *testing.T) {
	a := NewAssembler(1 << 20)
	offer := func(off int64, tx uint64, typ string) Step {
		key := fmt.Sprintf("%s/id-%d", typ, off)
		val := fmt.Sprintf(`{"schema":1,"tx":%d,"index":0,"count":1,"op":"upsert","type":%q,"id":"id-%d","entity":{"id":"id-%d"}}`, tx, typ, off, off)
		return a.Offer(Input{Offset: off, Key: []byte(key), Value: []byte(val)}, 4)
	}
	if st := offer(10, 1004, "widgets"); len(st.Rejects) != 1 || len(st.Closed) != 1 || len(st.Closed[0].Events) != 0 {
		t.Fatalf("forged event: %+v", st)
	}
	st := offer(11, 5, "services")
	if st.Duplicate || len(st.Closed) != 1 || st.Closed[0].ID != 5 || len(st.Closed[0].Events) != 1 {
		t.Fatalf("real tx 5 after a forged tx 1004: %+v", st)
	}
	if st := offer(12, 5, "services"); !st.Duplicate {
		t.Fatalf("tx 5 again is a duplicate: %+v", st)
	}
}
