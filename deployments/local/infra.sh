#!/usr/bin/env bash
# Starts the local Kafka, Postgres and Redis, runs a command with the test
# environment pointing at them, and stops again whatever it started itself.
#
#   infra.sh up                 start all three (idempotent)
#   infra.sh down               stop all three
#   infra.sh run -- CMD ARGS    up, run CMD, then stop what this call started
#   infra.sh env                print the test environment (for eval)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

export KAFKA_PORT=${KAFKA_PORT:-9092}
export PGPORT=${PGPORT:-55432}
export REDIS_PORT=${REDIS_PORT:-56379}

envvars() {
  cat <<ENV
export DELTAPLANE_TEST_KAFKA=127.0.0.1:$KAFKA_PORT
export DELTAPLANE_TEST_POSTGRES='postgres://postgres@127.0.0.1:$PGPORT/postgres?sslmode=disable'
export DELTAPLANE_TEST_REDIS=127.0.0.1:$REDIS_PORT
ENV
}

started=()
up() {
  for s in kafka postgres redis; do
    if ! "$here/$s.sh" status 2>/dev/null; then
      "$here/$s.sh" start
      started+=("$s")
    fi
  done
}

down_started() {
  for s in "${started[@]}"; do "$here/$s.sh" stop || true; done
}

case "${1:-}" in
  up) up ;;
  down) for s in redis postgres kafka; do "$here/$s.sh" stop || true; done ;;
  env) envvars ;;
  run)
    shift; [ "${1:-}" = "--" ] && shift
    up
    trap down_started EXIT
    eval "$(envvars)"
    "$@"
    ;;
  *) echo "usage: $0 up|down|env|run -- CMD" >&2; exit 2 ;;
esac
