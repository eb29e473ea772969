package store

import "testing"

// TestBeginAttemptWritesNoTransaction: counting an attempt, done before
// every batch, does not commit a bbolt transaction (each commit writes
// pages and fsyncs twice); the batch's own Apply is the one durable write.
func TestBeginAttemptWritesNoTransaction(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Apply([]Change{{Key: "services/a", Value: []byte(`{}`)}}, Meta{Version: 1, NextOffset: 5}); err != nil {
		t.Fatal(err)
	}
	writes := func() int64 { st := s.db.Stats(); return st.TxStats.GetWrite() }
	before := writes()
	for want := 1; want <= 3; want++ {
		if n, err := s.BeginAttempt(5); err != nil || n != want {
			t.Fatalf("attempt = %d, %v; want %d", n, err, want)
		}
	}
	if w := writes() - before; w != 0 {
		t.Fatalf("3 attempts counted with %d page writes, want none", w)
	}
	if n, _ := s.Attempts(5); n != 3 {
		t.Fatalf("Attempts = %d, want 3", n)
	}
}
