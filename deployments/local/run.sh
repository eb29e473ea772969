#!/usr/bin/env bash
# make run: the whole system on this machine without Docker. Starts Kafka and
# Postgres (when not already running), admin-api on :8001, the sync-gateway
# and two dataplanes; Ctrl-C stops everything it started.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$root/bin
state=$root/.local/run
mkdir -p "$state"

export KAFKA_PORT=${KAFKA_PORT:-9092} PGPORT=${PGPORT:-55432}
export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/deltaplane?sslmode=disable"
export LOG_LEVEL=${LOG_LEVEL:-info}

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
  for s in "${infra_started[@]}"; do "$here/$s.sh" stop || true; done
}
trap cleanup INT TERM EXIT

for s in kafka postgres; do
  if ! "$here/$s.sh" status 2>/dev/null; then "$here/$s.sh" start; infra_started+=("$s"); fi
done

start() { # name, then env assignments, then the binary
  local name=$1; shift
  env "$@" >"$state/$name.log" 2>&1 &
  pids+=($!)
}

start admin-api ADMIN_LISTEN=127.0.0.1:8001 "$bin/admin-api"
start sync-gateway SYNC_LISTEN=127.0.0.1:8005 "$bin/sync-gateway"
start dataplane-1 DP_NODE_ID=dp-1 DP_DATA_DIR="$state/dp-1" DP_PROXY_LISTEN=127.0.0.1:8000 DP_PROXY_TLS_LISTEN=127.0.0.1:8443 DP_STATUS_LISTEN=127.0.0.1:8100 "$bin/dataplane"
start dataplane-2 DP_NODE_ID=dp-2 DP_DATA_DIR="$state/dp-2" DP_PROXY_LISTEN=127.0.0.1:8010 DP_PROXY_TLS_LISTEN=127.0.0.1:8453 DP_STATUS_LISTEN=127.0.0.1:8110 "$bin/dataplane"

wait_http() {
  for _ in $(seq 1 300); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "no answer from $1; logs in $state/" >&2; return 1
}
wait_http http://127.0.0.1:8001/health
wait_http http://127.0.0.1:8005/health
wait_http http://127.0.0.1:8100/health
wait_http http://127.0.0.1:8110/health

cat <<MSG

deltaplane is running (logs in $state/):
  admin-api      http://127.0.0.1:8001
  cluster page   http://127.0.0.1:8001/ui
  sync-gateway   http://127.0.0.1:8005/status
  dataplane-1    proxy http://127.0.0.1:8000   status http://127.0.0.1:8100/status
  dataplane-2    proxy http://127.0.0.1:8010   status http://127.0.0.1:8110/status

Try it (the upstream here is admin-api's own /status, so no other server is needed):
  curl -s -X POST http://127.0.0.1:8001/services -H 'content-type: application/json' \\
       -d '{"name":"example","url":"http://127.0.0.1:8001/status"}'
  curl -s -X POST http://127.0.0.1:8001/services/example/routes -H 'content-type: application/json' \\
       -d '{"name":"example-route","paths":["/example"]}'
  curl -s http://127.0.0.1:8000/example
  curl -s http://127.0.0.1:8010/example

Know when a change is live on every data plane (the write's Deltaplane-Tx header):
  tx=\$(curl -si -X PATCH http://127.0.0.1:8001/routes/example-route -H 'content-type: application/json' \\
       -d '{"paths":["/example","/ex"]}' | awk -F': ' 'tolower(\$1)=="deltaplane-tx"{print \$2+0}')
  curl -s "http://127.0.0.1:8001/clustering/changes/\$tx?wait=live&timeout=5s"

Ctrl-C stops everything.
MSG

wait -n "${pids[@]}" || true
[ -n "$stopping" ] || echo "a process exited; see $state/*.log" >&2
