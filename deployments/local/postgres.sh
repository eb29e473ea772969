#!/usr/bin/env bash
# A project-local PostgreSQL cluster for development and tests, without Docker.
# Uses Debian's postgresql package (installed when missing, as root) and runs
# its own cluster on a private port with trust auth on loopback only.
#
#   postgres.sh install   apt-get install postgresql when no server is present
#   postgres.sh start     initdb when needed, start, wait, create $PGDATABASE
#   postgres.sh stop      fast shutdown
#   postgres.sh stop-immediate   immediate shutdown (a crash: recovery on start)
#   postgres.sh status    exit 0 when the server accepts connections
#
# Overridable: PGPORT (55432), PGDATABASE (deltaplane), PG_HOME
# (/tmp/deltaplane-pg-$PGPORT; outside the checkout so the postgres user can
# always reach it). PG_TLS_DIR: a directory of certs.sh (ca.crt,
# postgres.crt, postgres.key) to serve TLS with (clients then connect with
# sslmode=verify-full&sslrootcert=$PG_TLS_DIR/ca.crt; see docs/security.md).
set -euo pipefail

PGPORT=${PGPORT:-55432}
PGDATABASE=${PGDATABASE:-deltaplane}
PG_HOME=${PG_HOME:-/tmp/deltaplane-pg-$PGPORT}
data=$PG_HOME/data

log() { printf 'postgres: %s\n' "$*" >&2; }

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

install() {
  [ -n "$(bindir)" ] && [ -x "$(bindir)/initdb" ] && return 0
  [ "$(id -u)" = 0 ] || { log "PostgreSQL server missing; install the postgresql package"; exit 1; }
  log "installing Debian's postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ready() { as_pg "$(bindir)/pg_isready" -q -h 127.0.0.1 -p "$PGPORT"; }

start() {
  install
  local bin
  bin=$(bindir)
  if ! ready; then
    mkdir -p "$PG_HOME"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$PG_HOME"
    if [ ! -f "$data/PG_VERSION" ]; then
      as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    local tls=""
    if [ -n "${PG_TLS_DIR:-}" ]; then
      # The server's key must belong to the server's user, mode 0600.
      mkdir -p "$PG_HOME/tls"
      cp "$PG_TLS_DIR/ca.crt" "$PG_TLS_DIR/postgres.crt" "$PG_TLS_DIR/postgres.key" "$PG_HOME/tls/"
      chmod 600 "$PG_HOME/tls/postgres.key"
      [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$PG_HOME/tls"
      tls="-c ssl=on -c ssl_cert_file=$PG_HOME/tls/postgres.crt -c ssl_key_file=$PG_HOME/tls/postgres.key -c ssl_ca_file=$PG_HOME/tls/ca.crt"
    fi
    as_pg "$bin/pg_ctl" -D "$data" -l "$PG_HOME/postgres.log" -w -t 60 \
      -o "-p $PGPORT -k $PG_HOME -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on -c shared_buffers=256MB $tls" start >/dev/null
  fi
  if ! as_pg "$bin/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc "select 1 from pg_database where datname='$PGDATABASE'" | grep -q 1; then
    as_pg "$bin/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "create database \"$PGDATABASE\"" >/dev/null
  fi
  log "ready on 127.0.0.1:$PGPORT (database $PGDATABASE)"
}

stop() {
  local bin
  bin=$(bindir)
  [ -n "$bin" ] && [ -f "$data/postmaster.pid" ] || { log "not running"; return 0; }
  as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null || true
  log "stopped"
}

stop_immediate() {
  local bin
  bin=$(bindir)
  [ -n "$bin" ] && [ -f "$data/postmaster.pid" ] || { log "not running"; return 0; }
  as_pg "$bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null || true
  log "stopped (immediate)"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  stop-immediate) stop_immediate ;;
  status) ready ;;
  *) echo "usage: $0 install|start|stop|stop-immediate|status" >&2; exit 2 ;;
esac
