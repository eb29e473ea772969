#!/usr/bin/env bash
# Single-node KRaft Kafka broker for development and tests, without Docker.
# The broker jars come from Maven Central (deployments/local/kafka/pom.xml)
# and are cached under $KAFKA_LIBS (and ~/.m2).
#
#   kafka.sh fetch    resolve the jars (idempotent)
#   kafka.sh start    format a data dir when needed, start, wait until ready
#   kafka.sh stop     SIGTERM the broker and wait for it to exit
#   kafka.sh status   exit 0 when the broker port accepts connections
#
# Overridable: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093),
# KAFKA_HOME (.local/kafka), KAFKA_HEAP (512m), KAFKA_START_TIMEOUT (90 s),
# KAFKA_ADVERTISED_PORT (KAFKA_PORT; the port clients are told to use, e.g.
# a fault proxy's in front of the broker).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
KAFKA_ADVERTISED_PORT=${KAFKA_ADVERTISED_PORT:-$KAFKA_PORT}
KAFKA_HOME=${KAFKA_HOME:-$root/.local/kafka-$KAFKA_PORT}
KAFKA_LIBS=${KAFKA_LIBS:-$root/.local/kafka-libs}
KAFKA_HEAP=${KAFKA_HEAP:-512m}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
data=$KAFKA_HOME/data
pidfile=$KAFKA_HOME/kafka.pid

log() { printf 'kafka: %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

fetch() {
  if ls "$KAFKA_LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 && ls "$KAFKA_LIBS"/log4j-slf4j-impl-*.jar >/dev/null 2>&1; then
    return 0
  fi
  command -v mvn >/dev/null || { log "mvn not found (install maven)"; exit 1; }
  log "resolving broker jars from Maven Central into $KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  mvn -B -q -f "$here/kafka/pom.xml" \
    org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS"
}

write_config() {
  mkdir -p "$KAFKA_HOME" "$data"
  cat >"$KAFKA_HOME/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_ADVERTISED_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.cleaner.dedupe.buffer.size=2097152
log.cleaner.backoff.ms=1000
PROPS
  cat >"$KAFKA_HOME/log4j2.properties" <<'PROPS'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
PROPS
  cat >"$KAFKA_HOME/tools-log4j2.properties" <<'PROPS'
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
PROPS
}

start() {
  if port_open "$KAFKA_PORT"; then
    log "already listening on 127.0.0.1:$KAFKA_PORT"
    return 0
  fi
  command -v java >/dev/null || { log "java not found (install a JDK 17+)"; exit 1; }
  fetch
  write_config
  local cp="$KAFKA_LIBS/*"
  if [ ! -f "$data/meta.properties" ]; then
    local id
    id=$(java -Xmx256m -Dlog4j2.configurationFile="$KAFKA_HOME/tools-log4j2.properties" -cp "$cp" kafka.tools.StorageTool random-uuid)
    java -Xmx256m -Dlog4j2.configurationFile="$KAFKA_HOME/tools-log4j2.properties" -cp "$cp" \
      kafka.tools.StorageTool format --standalone -t "$id" -c "$KAFKA_HOME/server.properties" >/dev/null
  fi
  local t0=$SECONDS
  nohup java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$KAFKA_HOME/log4j2.properties" \
    -cp "$cp" kafka.Kafka "$KAFKA_HOME/server.properties" >"$KAFKA_HOME/kafka.out" 2>&1 &
  echo $! >"$pidfile"
  until port_open "$KAFKA_PORT"; do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      log "broker exited during start-up; last lines of $KAFKA_HOME/kafka.out:"
      tail -n 30 "$KAFKA_HOME/kafka.out" >&2
      exit 1
    fi
    if (( SECONDS - t0 > KAFKA_START_TIMEOUT )); then
      log "not ready after ${KAFKA_START_TIMEOUT}s; see $KAFKA_HOME/kafka.out"
      exit 1
    fi
    sleep 0.2
  done
  log "ready on 127.0.0.1:$KAFKA_PORT after $((SECONDS - t0))s (pid $(cat "$pidfile"))"
}

stop() {
  [ -f "$pidfile" ] || { log "not started by this script"; return 0; }
  local pid
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$pidfile"
  log "stopped"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) port_open "$KAFKA_PORT" ;;
  *) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
