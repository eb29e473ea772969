#!/usr/bin/env bash
# A secured single-node KRaft broker: SSL only (mutual TLS, client
# certificates required), principals from the certificate's CN, Kafka's
# StandardAuthorizer with no access unless an ACL grants it, and the
# topics and ACLs of docs/security.md created at start by the set-up
# principal (e2e/cmd/kafka-setup). The PLAINTEXT broker of kafka.sh stays
# the default for make run and make test; this one listens on other ports.
#
#   kafka-secure.sh start               certificates (certs.sh init), start,
#                                       topics and ACLs for $DATAPLANES
#   kafka-secure.sh stop                SIGTERM the broker, wait
#   kafka-secure.sh status              exit 0 when the SSL port accepts
#   kafka-secure.sh add-dataplane NODE  a certificate for data plane NODE
#                                       and its ACLs (its own group)
#   kafka-secure.sh env PRINCIPAL       print a service's KAFKA_* variables
#
# Overridable: KAFKA_SECURE_PORT (9392), KAFKA_SECURE_CONTROLLER_PORT
# (9393), KAFKA_SECURE_HOME (.local/kafka-secure-$KAFKA_SECURE_PORT),
# CERTS_DIR (.local/certs), DATAPLANES ("dp-1 dp-2"), TOPIC_PREFIX,
# KAFKA_HEAP (512m), KAFKA_START_TIMEOUT (90 s).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
PORT=${KAFKA_SECURE_PORT:-9392}
CTRL=${KAFKA_SECURE_CONTROLLER_PORT:-9393}
HOME_DIR=${KAFKA_SECURE_HOME:-$root/.local/kafka-secure-$PORT}
KAFKA_LIBS=${KAFKA_LIBS:-$root/.local/kafka-libs}
export CERTS_DIR=${CERTS_DIR:-$root/.local/certs}
DATAPLANES=${DATAPLANES:-dp-1 dp-2}
KAFKA_HEAP=${KAFKA_HEAP:-512m}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
data=$HOME_DIR/data
pidfile=$HOME_DIR/kafka.pid

log() { printf 'kafka-secure: %s\n' "$*" >&2; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_config() {
  mkdir -p "$HOME_DIR" "$data"
  # Kafka's PEM key store: the private key (PKCS#8) and the chain in one file.
  cat "$CERTS_DIR/kafka-broker.key" "$CERTS_DIR/kafka-broker.crt" >"$HOME_DIR/broker.pem"
  chmod 600 "$HOME_DIR/broker.pem"
  cat >"$HOME_DIR/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CTRL
listeners=SSL://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CTRL
advertised.listeners=SSL://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CTRL
controller.listener.names=CONTROLLER
inter.broker.listener.name=SSL
listener.security.protocol.map=CONTROLLER:SSL,SSL:SSL
ssl.client.auth=required
ssl.keystore.type=PEM
ssl.keystore.location=$HOME_DIR/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$CERTS_DIR/ca.crt
ssl.endpoint.identification.algorithm=https
ssl.principal.mapping.rules=RULE:^CN=([^,]+),.*\$/\$1/,RULE:^CN=([^,]+)\$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:kafka-broker;User:kafka-setup
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
  cat >"$HOME_DIR/log4j2.properties" <<'PROPS'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = INFO
PROPS
  cat >"$HOME_DIR/tools-log4j2.properties" <<'PROPS'
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

# env PRINCIPAL: the variables a service running as PRINCIPAL needs.
envvars() {
  cat <<ENV
export KAFKA_BROKERS=127.0.0.1:$PORT
export KAFKA_TLS_CA=$CERTS_DIR/ca.crt
export KAFKA_TLS_CERT=$CERTS_DIR/$1.crt
export KAFKA_TLS_KEY=$CERTS_DIR/$1.key
ENV
}

# setup NODE...: topics and the ACLs of the services and these data planes.
setup() {
  local list
  list=$(echo "$*" | tr ' ' ',')
  (cd "$root/e2e" && eval "$(envvars kafka-setup)" && go run ./cmd/kafka-setup \
    -brokers "127.0.0.1:$PORT" -prefix "${TOPIC_PREFIX:-}" -dataplanes "$list" -wait "${KAFKA_START_TIMEOUT}s")
}

start() {
  "$here/certs.sh" init
  if port_open "$PORT"; then
    log "already listening on 127.0.0.1:$PORT"
  else
    command -v java >/dev/null || { log "java not found (install a JDK 17+)"; exit 1; }
    "$here/kafka.sh" fetch
    write_config
    local cp="$KAFKA_LIBS/*" t0=$SECONDS
    if [ ! -f "$data/meta.properties" ]; then
      local id
      id=$(java -Xmx256m -Dlog4j2.configurationFile="$HOME_DIR/tools-log4j2.properties" -cp "$cp" kafka.tools.StorageTool random-uuid)
      java -Xmx256m -Dlog4j2.configurationFile="$HOME_DIR/tools-log4j2.properties" -cp "$cp" \
        kafka.tools.StorageTool format --standalone -t "$id" -c "$HOME_DIR/server.properties" >/dev/null
    fi
    nohup java -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -XX:+UseG1GC \
      -Dlog4j2.configurationFile="$HOME_DIR/log4j2.properties" \
      -cp "$cp" kafka.Kafka "$HOME_DIR/server.properties" >"$HOME_DIR/kafka.out" 2>&1 &
    echo $! >"$pidfile"
    until port_open "$PORT"; do
      if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        log "broker exited during start-up; last lines of $HOME_DIR/kafka.out:"
        tail -n 30 "$HOME_DIR/kafka.out" >&2
        exit 1
      fi
      if (( SECONDS - t0 > KAFKA_START_TIMEOUT )); then
        log "not ready after ${KAFKA_START_TIMEOUT}s; see $HOME_DIR/kafka.out"
        exit 1
      fi
      sleep 0.2
    done
    log "SSL listener on 127.0.0.1:$PORT after $((SECONDS - t0))s (pid $(cat "$pidfile"))"
  fi
  # shellcheck disable=SC2086
  setup $DATAPLANES
}

add_dataplane() {
  local node=$1
  case "$node" in *[!A-Za-z0-9._-]*|'') log "bad node id: $node"; exit 2 ;; esac
  [ -f "$CERTS_DIR/dataplane-$node.crt" ] || "$here/certs.sh" issue "dataplane-$node"
  setup "$node"
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
  start) start ;;
  stop) stop ;;
  status) port_open "$PORT" ;;
  add-dataplane) [ $# -eq 2 ] || { echo "usage: $0 add-dataplane NODE" >&2; exit 2; }; add_dataplane "$2" ;;
  env) [ $# -eq 2 ] || { echo "usage: $0 env PRINCIPAL" >&2; exit 2; }; envvars "$2" ;;
  *) echo "usage: $0 start|stop|status|add-dataplane NODE|env PRINCIPAL" >&2; exit 2 ;;
esac
