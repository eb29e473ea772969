#!/usr/bin/env bash
# A 3-node KRaft Kafka cluster on this machine, without Docker: three JVMs,
# each broker and controller (a static quorum of three voters), each with its
# own ports and data directory. Topics the services create on it get
# replication factor 3 and min.insync.replicas=2 (shared/broker); the
# cluster's own defaults match, for internal topics (__consumer_offsets).
# kafka.sh's single node stays the default of make run and make test.
#
#   kafka-cluster.sh fetch        resolve the broker jars (kafka.sh fetch)
#   kafka-cluster.sh start [N]    format when needed, start node N (1..3) or
#                                 all, wait until each accepts connections
#   kafka-cluster.sh stop [N]     SIGTERM node N or all, wait for the exit
#   kafka-cluster.sh kill N       SIGKILL node N (a crash), wait for the exit
#   kafka-cluster.sh status [N]   exit 0 when node N (or every node) accepts
#                                 connections
#   kafka-cluster.sh pid N        print node N's process id
#   kafka-cluster.sh env          print KAFKA_BROKERS=... for the services
#
# Overridable: KAFKA_CLUSTER_PORTS (9192,9193,9194: the client ports),
# KAFKA_CLUSTER_CONTROLLER_PORTS (9195,9196,9197), KAFKA_CLUSTER_HOME
# (.local/kafka-cluster-<first port>), KAFKA_HEAP (256m per node),
# KAFKA_LIBS (.local/kafka-libs), KAFKA_START_TIMEOUT (120 s).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
IFS=, read -r -a ports <<<"${KAFKA_CLUSTER_PORTS:-9192,9193,9194}"
IFS=, read -r -a cports <<<"${KAFKA_CLUSTER_CONTROLLER_PORTS:-9195,9196,9197}"
[ ${#ports[@]} = 3 ] && [ ${#cports[@]} = 3 ] || { echo "kafka-cluster: want 3 client and 3 controller ports" >&2; exit 2; }
KAFKA_CLUSTER_HOME=${KAFKA_CLUSTER_HOME:-$root/.local/kafka-cluster-${ports[0]}}
export KAFKA_LIBS=${KAFKA_LIBS:-$root/.local/kafka-libs}
KAFKA_HEAP=${KAFKA_HEAP:-256m}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}

log() { printf 'kafka-cluster: %s\n' "$*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
home() { echo "$KAFKA_CLUSTER_HOME/node-$1"; }
port() { echo "${ports[$(($1 - 1))]}"; }
pidfile() { echo "$(home "$1")/kafka.pid"; }

nodes() { # the node named by $1, or all three
  case "${1:-}" in
    "") echo 1 2 3 ;;
    1 | 2 | 3) echo "$1" ;;
    *) log "no node $1 (1..3)"; exit 2 ;;
  esac
}

voters() {
  local v=() i
  for i in 1 2 3; do v+=("$i@127.0.0.1:${cports[$((i - 1))]}"); done
  (IFS=,; echo "${v[*]}")
}

brokers() {
  local b=() i
  for i in 1 2 3; do b+=("127.0.0.1:$(port "$i")"); done
  (IFS=,; echo "${b[*]}")
}

write_config() { # node
  local n=$1 h
  h=$(home "$n")
  mkdir -p "$h/data"
  cat >"$h/server.properties" <<PROPS
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$(port "$n"),CONTROLLER://127.0.0.1:${cports[$((n - 1))]}
advertised.listeners=PLAINTEXT://127.0.0.1:$(port "$n"),CONTROLLER://127.0.0.1:${cports[$((n - 1))]}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$h/data
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.cleaner.dedupe.buffer.size=2097152
log.cleaner.backoff.ms=1000
num.network.threads=2
num.io.threads=2
background.threads=2
PROPS
  # The same log4j set-up as kafka.sh's single node.
  cat >"$h/log4j2.properties" <<'PROPS'
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
  cat >"$h/tools-log4j2.properties" <<'PROPS'
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

java_tool() { # node, StorageTool arguments
  local h
  h=$(home "$1"); shift
  java -Xmx256m -Dlog4j2.configurationFile="$h/tools-log4j2.properties" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool "$@"
}

format() { # every node not yet formatted, with the cluster's one id
  local id_file=$KAFKA_CLUSTER_HOME/cluster-id n
  for n in 1 2 3; do write_config "$n"; done
  [ -s "$id_file" ] || java_tool 1 random-uuid >"$id_file"
  for n in 1 2 3; do
    [ -f "$(home "$n")/data/meta.properties" ] && continue
    java_tool "$n" format -t "$(cat "$id_file")" -c "$(home "$n")/server.properties" >/dev/null
  done
}

launch() { # node
  local n=$1 h
  h=$(home "$n")
  if port_open "$(port "$n")"; then
    log "node $n already listening on 127.0.0.1:$(port "$n")"
    return 0
  fi
  nohup java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -XX:ActiveProcessorCount=2 \
    -Dlog4j2.configurationFile="$h/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$h/server.properties" >>"$h/kafka.out" 2>&1 &
  echo $! >"$(pidfile "$n")"
}

wait_ready() { # node
  local n=$1 t0=$SECONDS pid
  pid=$(cat "$(pidfile "$n")" 2>/dev/null || true)
  until port_open "$(port "$n")"; do
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
      log "node $n exited during start-up; last lines of $(home "$n")/kafka.out:"
      tail -n 30 "$(home "$n")/kafka.out" >&2
      exit 1
    fi
    if ((SECONDS - t0 > KAFKA_START_TIMEOUT)); then
      log "node $n not ready after ${KAFKA_START_TIMEOUT}s; see $(home "$n")/kafka.out"
      exit 1
    fi
    sleep 0.2
  done
}

start() {
  command -v java >/dev/null || { log "java not found (install a JDK 17+)"; exit 1; }
  "$here/kafka.sh" fetch
  format
  local t0=$SECONDS n
  # A node's broker port opens only once the quorum has a leader, so the
  # nodes start together and are awaited after.
  for n in $(nodes "${1:-}"); do launch "$n"; done
  for n in $(nodes "${1:-}"); do wait_ready "$n"; done
  log "node(s) $(nodes "${1:-}" | tr ' ' ,) ready after $((SECONDS - t0))s; KAFKA_BROKERS=$(brokers)"
}

# signal_wait node signal: signals the node's process and waits for its exit.
signal_wait() {
  local n=$1 sig=$2 pid
  [ -f "$(pidfile "$n")" ] || { log "node $n not started by this script"; return 0; }
  pid=$(cat "$(pidfile "$n")")
  if kill -0 "$pid" 2>/dev/null; then
    kill -"$sig" "$pid"
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$(pidfile "$n")"
  log "node $n stopped ($sig)"
}

status() {
  local n
  for n in $(nodes "${1:-}"); do port_open "$(port "$n")" || return 1; done
}

case "${1:-}" in
  fetch) "$here/kafka.sh" fetch ;;
  start) start "${2:-}" ;;
  stop) for n in $(nodes "${2:-}"); do signal_wait "$n" TERM; done ;;
  kill) [ -n "${2:-}" ] || { log "kill needs a node"; exit 2; }; signal_wait "$(nodes "$2")" KILL ;;
  status) status "${2:-}" ;;
  pid) [ -n "${2:-}" ] || { log "pid needs a node"; exit 2; }; cat "$(pidfile "$(nodes "$2")")" ;;
  env) echo "KAFKA_BROKERS=$(brokers)" ;;
  *) echo "usage: $0 fetch|start [N]|stop [N]|kill N|status [N]|pid N|env" >&2; exit 2 ;;
esac
