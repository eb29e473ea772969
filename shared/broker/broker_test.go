package broker

import (
	"slices"
	"testing"
)

func TestBrokers(t *testing.T) {
	if got := Brokers(" a:1, b:2,,"); !slices.Equal(got, []string{"a:1", "b:2"}) {
		t.Fatalf("Brokers = %v", got)
	}
	if got := Brokers(""); len(got) != 0 {
		t.Fatalf("Brokers(\"\") = %v", got)
	}
}
