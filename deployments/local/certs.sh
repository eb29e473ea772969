#!/usr/bin/env bash
# A test certificate authority and one certificate per principal, with
# openssl, for the secured local cluster (deployments/local/kafka-secure.sh)
# and the tests. Nothing here is fit for production keys; see docs/security.md
# for the production way (your own CA, the same names).
#
#   certs.sh init                 the CA, the broker, admin-api, sync-gateway,
#                                 the set-up principal, postgres and the
#                                 data planes dp-1 and dp-2 (idempotent)
#   certs.sh issue NAME [SAN..]   one more certificate, CN=NAME (a data plane:
#                                 NAME=dataplane-<node id>); re-issuing
#                                 replaces it (rotation)
#   certs.sh dir                  print the directory
#
# Overridable: CERTS_DIR (.local/certs), CERTS_DAYS (825).
# Files: ca.crt, ca.key, NAME.crt, NAME.key (PEM; EC P-256 keys, PKCS#8).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
CERTS_DIR=${CERTS_DIR:-$root/.local/certs}
CERTS_DAYS=${CERTS_DAYS:-825}

log() { printf 'certs: %s\n' "$*" >&2; }

command -v openssl >/dev/null || { log "openssl not found (apt-get install openssl)"; exit 1; }

ca() {
  mkdir -p "$CERTS_DIR"
  chmod 700 "$CERTS_DIR"
  [ -f "$CERTS_DIR/ca.crt" ] && return 0
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$CERTS_DIR/ca.key" -out "$CERTS_DIR/ca.crt" -days "$CERTS_DAYS" \
    -subj "/O=deltaplane/CN=deltaplane test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  log "CA in $CERTS_DIR/ca.crt"
}

# issue NAME [SAN...]: a leaf for both TLS client and server use, with
# localhost and 127.0.0.1 as subject alternative names besides any given.
issue() {
  local name=$1; shift
  case "$name" in *[!A-Za-z0-9._-]*|'') log "bad name: $name"; exit 2 ;; esac
  ca
  local san="DNS:localhost,IP:127.0.0.1"
  for s in "$@"; do san="$san,$s"; done
  local tmp
  tmp=$(mktemp -d)
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$tmp/key" -out "$tmp/csr" -subj "/O=deltaplane/CN=$name" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$san" >"$tmp/ext"
  openssl x509 -req -in "$tmp/csr" -CA "$CERTS_DIR/ca.crt" -CAkey "$CERTS_DIR/ca.key" \
    -CAcreateserial -days "$CERTS_DAYS" -sha256 -extfile "$tmp/ext" -out "$tmp/crt" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$tmp/key" -out "$tmp/key8"
  chmod 600 "$tmp/key8"
  mv "$tmp/key8" "$CERTS_DIR/$name.key"
  mv "$tmp/crt" "$CERTS_DIR/$name.crt"
  rm -rf "$tmp"
  log "issued $CERTS_DIR/$name.crt (CN=$name)"
}

init() {
  ca
  for n in kafka-broker kafka-setup admin-api sync-gateway postgres dataplane-dp-1 dataplane-dp-2; do
    [ -f "$CERTS_DIR/$n.crt" ] || issue "$n"
  done
}

case "${1:-}" in
  init) init ;;
  issue) shift; [ $# -ge 1 ] || { echo "usage: $0 issue NAME [SAN...]" >&2; exit 2; }; issue "$@" ;;
  dir) echo "$CERTS_DIR" ;;
  *) echo "usage: $0 init|issue NAME [SAN...]|dir" >&2; exit 2 ;;
esac
