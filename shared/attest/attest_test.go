package attest_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/deltaplane/deltaplane/shared/attest"
)

// certs issues a test CA and two data planes' certificates with the
// project's script (deployments/local/certs.sh), as an operator would.
func certs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join("..", "..", "deployments", "local", "certs.sh"), "init")
	cmd.Env = append(os.Environ(), "CERTS_DIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("certs.sh: %v\n%s", err, out)
	}
	return dir
}

func TestForgedHeartbeatRefused(t *testing.T) {
	dir := certs(t)
	principal := func(key string) string { return "dataplane-" + key }
	v, err := attest.NewVerifier(filepath.Join(dir, "ca.crt"), principal)
	if err != nil {
		t.Fatal(err)
	}
	dp1, err := attest.NewSigner(filepath.Join(dir, "dataplane-dp-1.crt"), filepath.Join(dir, "dataplane-dp-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	value := []byte(`{"node_id":"dp-1","version":7}`)
	now := time.Now()

	h, err := dp1.Sign([]byte("dp-1"), value)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify([]byte("dp-1"), value, h, now); err != nil {
		t.Fatalf("own heartbeat refused: %v", err)
	}

	// dp-1 writes under dp-2's key with its own (valid) certificate.
	forged, _ := dp1.Sign([]byte("dp-2"), []byte(`{"node_id":"dp-2","version":999}`))
	if err := v.Verify([]byte("dp-2"), []byte(`{"node_id":"dp-2","version":999}`), forged, now); !errors.Is(err, attest.ErrPrincipal) {
		t.Errorf("forged key: got %v, want ErrPrincipal", err)
	}
	// dp-1's signed record with a changed value.
	if err := v.Verify([]byte("dp-1"), []byte(`{"node_id":"dp-1","version":8}`), h, now); !errors.Is(err, attest.ErrSignature) {
		t.Errorf("altered value: got %v, want ErrSignature", err)
	}
	// No headers at all (a PLAINTEXT-era data plane, or a forger).
	if err := v.Verify([]byte("dp-1"), value, nil, now); !errors.Is(err, attest.ErrUnsigned) {
		t.Errorf("unsigned: got %v, want ErrUnsigned", err)
	}
	// A certificate from another CA, with the right CN.
	other := certs(t)
	rogue, err := attest.NewSigner(filepath.Join(other, "dataplane-dp-2.crt"), filepath.Join(other, "dataplane-dp-2.key"))
	if err != nil {
		t.Fatal(err)
	}
	rh, _ := rogue.Sign([]byte("dp-2"), value)
	if err := v.Verify([]byte("dp-2"), value, rh, now); !errors.Is(err, attest.ErrChain) {
		t.Errorf("rogue CA: got %v, want ErrChain", err)
	}
	// An expired certificate.
	if err := v.Verify([]byte("dp-1"), value, h, now.Add(3*365*24*time.Hour)); !errors.Is(err, attest.ErrChain) {
		t.Errorf("expired: got %v, want ErrChain", err)
	}
}
