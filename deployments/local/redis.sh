#!/usr/bin/env bash
# A local redis-server for the rate-limiting plugin's redis strategy, without
# Docker. Debian's redis-server is installed when missing (as root).
#
#   redis.sh install | start | stop | status
#
# Overridable: REDIS_PORT (56379), REDIS_HOME (/tmp/deltaplane-redis-$REDIS_PORT).
set -euo pipefail

REDIS_PORT=${REDIS_PORT:-56379}
REDIS_HOME=${REDIS_HOME:-/tmp/deltaplane-redis-$REDIS_PORT}
log() { printf 'redis: %s\n' "$*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install() {
  command -v redis-server >/dev/null && return 0
  [ "$(id -u)" = 0 ] || { log "redis-server missing; install the redis-server package"; exit 1; }
  log "installing Debian's redis-server package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q redis-server >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null; }
}

start() {
  install
  if port_open "$REDIS_PORT"; then log "already listening on 127.0.0.1:$REDIS_PORT"; return 0; fi
  mkdir -p "$REDIS_HOME"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$REDIS_HOME" --save '' --appendonly no \
    --daemonize yes --pidfile "$REDIS_HOME/redis.pid" --logfile "$REDIS_HOME/redis.log"
  for _ in $(seq 1 100); do port_open "$REDIS_PORT" && break; sleep 0.1; done
  port_open "$REDIS_PORT" || { log "not ready; see $REDIS_HOME/redis.log"; exit 1; }
  log "ready on 127.0.0.1:$REDIS_PORT"
}

stop() {
  [ -f "$REDIS_HOME/redis.pid" ] || { log "not running"; return 0; }
  kill "$(cat "$REDIS_HOME/redis.pid")" 2>/dev/null || true
  rm -f "$REDIS_HOME/redis.pid"
  log "stopped"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) port_open "$REDIS_PORT" ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
