#!/usr/bin/env bash
# make run-secure: the whole system on this machine, secured (see
# docs/security.md). Issues the test CA and one certificate per principal
# (certs.sh), starts the secured broker (kafka-secure.sh: mutual TLS, ACLs)
# on 127.0.0.1:9392 and a Postgres serving TLS on 127.0.0.1:55433, then
# admin-api on https://127.0.0.1:8001 (with a generated ADMIN_TOKEN, and
# Postgres with sslmode=verify-full), the sync-gateway and two data planes,
# each service authenticating to Kafka as its own principal. Ctrl-C stops
# everything it started. Logs in .local/run-secure/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${BIN_DIR:-$root/bin}
state=$root/.local/run-secure
mkdir -p "$state"

export CERTS_DIR=${CERTS_DIR:-$root/.local/certs}
export KAFKA_SECURE_PORT=${KAFKA_SECURE_PORT:-9392} DATAPLANES="dp-1 dp-2"
SECURE_PGPORT=${SECURE_PGPORT:-55433}
ca=$CERTS_DIR/ca.crt
export LOG_LEVEL=${LOG_LEVEL:-info}
token=$(openssl rand -hex 16)
echo "$token" >"$state/admin-token"
chmod 600 "$state/admin-token"

infra_started=()
pids=()
stopping=
cleanup() {
  trap - INT TERM EXIT
  stopping=1
  echo
  echo "stopping..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for s in "${infra_started[@]}"; do $s stop || true; done
}
trap cleanup INT TERM EXIT

"$here/certs.sh" init
if ! "$here/kafka-secure.sh" status; then infra_started+=("$here/kafka-secure.sh"); fi
"$here/kafka-secure.sh" start # topics and ACLs even when already running
pg="env PGPORT=$SECURE_PGPORT PG_TLS_DIR=$CERTS_DIR $here/postgres.sh"
if ! $pg status 2>/dev/null; then $pg start; infra_started+=("$pg"); fi

start() { # name, principal, then env assignments, then the binary
  local name=$1 principal=$2; shift 2
  env KAFKA_BROKERS=127.0.0.1:$KAFKA_SECURE_PORT KAFKA_TLS_CA="$ca" \
    KAFKA_TLS_CERT="$CERTS_DIR/$principal.crt" KAFKA_TLS_KEY="$CERTS_DIR/$principal.key" \
    "$@" >"$state/$name.log" 2>&1 &
  pids+=($!)
}

start admin-api admin-api ADMIN_LISTEN=127.0.0.1:8001 ADMIN_TOKEN="$token" \
  ADMIN_TLS_CERT="$CERTS_DIR/admin-api.crt" ADMIN_TLS_KEY="$CERTS_DIR/admin-api.key" \
  DATABASE_URL="postgres://postgres@127.0.0.1:$SECURE_PGPORT/deltaplane?sslmode=verify-full&sslrootcert=$ca" "$bin/admin-api"
start sync-gateway sync-gateway SYNC_LISTEN=127.0.0.1:8005 "$bin/sync-gateway"
start dataplane-1 dataplane-dp-1 DP_NODE_ID=dp-1 DP_DATA_DIR="$state/dp-1" DP_PROXY_LISTEN=127.0.0.1:8000 DP_PROXY_TLS_LISTEN=127.0.0.1:8443 DP_STATUS_LISTEN=127.0.0.1:8100 "$bin/dataplane"
start dataplane-2 dataplane-dp-2 DP_NODE_ID=dp-2 DP_DATA_DIR="$state/dp-2" DP_PROXY_LISTEN=127.0.0.1:8010 DP_PROXY_TLS_LISTEN=127.0.0.1:8453 DP_STATUS_LISTEN=127.0.0.1:8110 "$bin/dataplane"

wait_http() {
  for _ in $(seq 1 300); do curl -fs --cacert "$ca" -o /dev/null "$@" && return 0; sleep 0.1; done
  echo "no answer from $1; logs in $state/" >&2; return 1
}
wait_http https://127.0.0.1:8001/health
wait_http http://127.0.0.1:8005/health
wait_http http://127.0.0.1:8100/health
wait_http http://127.0.0.1:8110/health

cat <<MSG

deltaplane is running, secured (logs in $state/; docs/security.md):
  admin-api      https://127.0.0.1:8001   token in $state/admin-token
  sync-gateway   http://127.0.0.1:8005/status
  dataplane-1    proxy http://127.0.0.1:8000   status http://127.0.0.1:8100/status
  dataplane-2    proxy http://127.0.0.1:8010   status http://127.0.0.1:8110/status
  Kafka          127.0.0.1:$KAFKA_SECURE_PORT (mutual TLS; certificates in $CERTS_DIR)
  Postgres       127.0.0.1:$SECURE_PGPORT (TLS, sslmode=verify-full)

Try it:
  T=\$(cat $state/admin-token)
  curl -s --cacert $ca -H "Kong-Admin-Token: \$T" -X POST https://127.0.0.1:8001/services \\
       -H 'content-type: application/json' -d '{"name":"example","url":"http://127.0.0.1:8100/health"}'
  curl -s --cacert $ca -H "Kong-Admin-Token: \$T" -X POST https://127.0.0.1:8001/services/example/routes \\
       -H 'content-type: application/json' -d '{"name":"example-route","paths":["/example"]}'
  curl -s http://127.0.0.1:8000/example
  curl -s --cacert $ca -H "Kong-Admin-Token: \$T" https://127.0.0.1:8001/clustering/data-planes

Ctrl-C stops everything.
MSG

wait -n "${pids[@]}" || true
[ -n "$stopping" ] || echo "a process exited; see $state/*.log" >&2
