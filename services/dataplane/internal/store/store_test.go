package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/wire"
)

func TestApplyReplaceAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Meta(); m.Version != 0 || m.Complete {
		t.Fatalf("fresh meta %+v", m)
	}
	now := time.Now().UTC().Truncate(time.Second)
	err = s.Apply([]Change{{Key: "services/a", Value: []byte(`{"id":"a"}`)}, {Key: "services/b", Value: []byte(`{"id":"b"}`)}},
		Meta{Version: 1, Hash: 7, NextOffset: 2, LastApply: now, Complete: true, Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]Change{{Key: "services/a"}}, Meta{Version: 2, Hash: 8, NextOffset: 3, LastApply: now, Complete: true, Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m, _ := s.Meta()
	if m.Version != 2 || m.Hash != wire.Hash(8) || m.NextOffset != 3 || !m.LastApply.Equal(now) || m.Topic != "t" {
		t.Fatalf("reopened meta %+v", m)
	}
	var keys []string
	s.ForEach(func(k string, _ []byte) error { keys = append(keys, k); return nil })
	if len(keys) != 1 || keys[0] != "services/b" {
		t.Fatalf("keys %v", keys)
	}
	if err := s.Replace(map[string][]byte{"routes/r": []byte(`{}`)}, Meta{Version: 9, Complete: true}); err != nil {
		t.Fatal(err)
	}
	keys = nil
	s.ForEach(func(k string, _ []byte) error { keys = append(keys, k); return nil })
	if len(keys) != 1 || keys[0] != "routes/r" {
		t.Fatalf("after replace keys %v", keys)
	}
	if err := s.SetMeta(func(m *Meta) { m.CaughtUp = now }); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.Meta(); m.Version != 9 || !m.CaughtUp.Equal(now) {
		t.Fatalf("SetMeta lost fields: %+v", m)
	}
}

func benchApply(b *testing.B, opt Options) {
	s, err := Open(b.TempDir(), opt)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ents := map[string][]byte{}
	for i := range 30000 {
		ents[fmt.Sprintf("routes/r%05d", i)] = fmt.Appendf(nil, `{"id":"r%05d","paths":["/api/%d"],"service":{"id":"s%05d"}}`, i, i, i%5000)
	}
	if err := s.Replace(ents, Meta{Version: 1, Complete: true}); err != nil {
		b.Fatal(err)
	}
	vals := [][]byte{[]byte(`{"id":"r07777","paths":["/x"]}`), []byte(`{"id":"r07777","paths":["/y"]}`)}
	b.ReportAllocs()
	v := uint64(1)
	for b.Loop() {
		v++
		if err := s.Apply([]Change{{Key: "routes/r07777", Value: vals[v%2]}}, Meta{Version: v, NextOffset: int64(v), Complete: true}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyOneChange30kDurable is one batch's bbolt transaction with
// fsync, as the data plane runs it.
func BenchmarkApplyOneChange30kDurable(b *testing.B) { benchApply(b, Options{}) }

// BenchmarkApplyOneChange30kNoSync is the same without fsync (the cost of
// bbolt itself).
func BenchmarkApplyOneChange30kNoSync(b *testing.B) { benchApply(b, Options{NoSync: true}) }

func TestAttemptsSurviveReopenAndClearOnApply(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 2; want++ {
		if n, err := s.BeginAttempt(7); err != nil || n != want {
			t.Fatalf("attempt = %d, %v; want %d", n, err, want)
		}
	}
	s.Close()
	if s, err = Open(dir, Options{}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n, err := s.BeginAttempt(7); err != nil || n != 3 {
		t.Fatalf("attempt after reopen = %d, %v; want 3", n, err)
	}
	if n, _ := s.BeginAttempt(9); n != 1 {
		t.Fatalf("other batch attempt = %d, want 1", n)
	}
	if n, _ := s.Attempts(7); n != 0 {
		t.Fatalf("counter of the previous batch kept: %d", n)
	}
	if err := s.Apply([]Change{{Key: "services/a", Value: []byte(`{}`)}}, Meta{Version: 1, NextOffset: 10}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Attempts(9); n != 0 {
		t.Fatalf("apply left the counter at %d", n)
	}
	s.BeginAttempt(10)
	if err := s.Skip(Meta{Version: 2, NextOffset: 11, Complete: true}); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Attempts(10); n != 0 {
		t.Fatalf("skip left the counter at %d", n)
	}
	if m, _ := s.Meta(); m.Version != 2 || m.NextOffset != 11 {
		t.Fatalf("meta after skip %+v", m)
	}
	if v, _ := s.Get("services/a"); string(v) != `{}` {
		t.Fatalf("skip touched entities: %q", v)
	}
}
