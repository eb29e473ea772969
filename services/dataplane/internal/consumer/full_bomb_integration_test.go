//go:build integration

package consumer

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	dt "github.com/deltaplane/deltaplane/services/dataplane/internal/deltatest"
	"github.com/deltaplane/deltaplane/services/dataplane/internal/store"
	"github.com/deltaplane/deltaplane/shared/wire"
	"github.com/segmentio/kafka-go"
)

// A dp.full snapshot that inflates past wire.FullMaxInflatedBytes (256 MiB)
// from one small chunk is refused by the data plane: quarantined with the
// limit named, never applied, and the next good snapshot applies.
func TestFullModeRefusesSnapshotInflatingPastTheLimit(t *testing.T) {
	brokers, prefix, topic := fullTopic(t)
	dt.PublishFull(t, brokers, topic, 3, map[string]string{"services/a": `{"id":"a"}`})

	st, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{Brokers: brokers, Topic: topic, Group: prefix + "g", ProbeInterval: 200 * time.Millisecond, Mode: Full(),
		DLQTopic: topic + wire.DLQSuffix, Logger: slog.New(slog.NewJSONHandler(io.Discard, nil))}, st)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })

	dt.Eventually(t, wait, "version 3", func() bool { return c.Ready() && c.Snapshot().Version == 3 })

	// Version 4: valid JSON as far as it goes, a string that never ends.
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write([]byte(`{"schema":1,"version":4,"tx":4,"hash":"`))
	block := bytes.Repeat([]byte{'a'}, 1<<20)
	for range wire.FullMaxInflatedBytes>>20 + 1 {
		zw.Write(block)
	}
	zw.Close()
	if buf.Len() > wire.FullChunkBytes {
		t.Fatalf("the bomb is %d bytes compressed, more than one chunk", buf.Len())
	}
	hd := wire.DeltaHeader{Schema: wire.SchemaVersion, Version: 4, Index: 0, Count: 1, Tx: 4}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll}
	if err := w.WriteMessages(t.Context(), kafka.Message{Key: []byte(wire.FullKey(4, 0)), Value: buf.Bytes(), Headers: hd.Headers()}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	// The bomb is decoded, and refused.
	dt.Eventually(t, wait, "the snapshot refused", func() bool { return strings.Contains(c.LastError(), "inflates past") })
	if v := c.Snapshot().Version; v != 3 {
		t.Fatalf("version %d after the refused snapshot, want 3 (still the last good one)", v)
	}
	dt.ReadAll(t, brokers, topic+wire.DLQSuffix, 1) // quarantined
	if q := c.LastQuarantine(); !strings.Contains(q, "inflates past") {
		t.Fatalf("last quarantine %q does not name the limit", q)
	}
	h5 := dt.PublishFull(t, brokers, topic, 5, map[string]string{"services/b": `{"id":"b"}`})
	dt.Eventually(t, wait, "version 5", func() bool { return c.Snapshot().Version == 5 })
	if c.Snapshot().Hash != h5 {
		t.Fatalf("hash %s, want %s", c.Snapshot().Hash, h5)
	}
	t.Logf("refused: %s", c.LastError())
}
