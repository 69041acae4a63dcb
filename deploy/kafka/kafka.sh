#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft, combined broker+controller) for tests and demos.
#
#   bash deploy/kafka/kafka.sh up            start (or reuse) the broker and wait until it is ready
#   bash deploy/kafka/kafka.sh down [--wipe] stop it; --wipe also deletes its data
#   bash deploy/kafka/kafka.sh wipe          same as down --wipe
#   bash deploy/kafka/kafka.sh status        is it running and ready? (exit 0 yes, 3 no)
#   bash deploy/kafka/kafka.sh logs [-f] [-n N]   show the broker log
#
# The broker jars come from Maven Central (org.apache.kafka:kafka_2.13 and a log4j2 SLF4J binding,
# see pom.xml here) and are cached, so only the first `up` downloads anything.
#
# Environment:
#   KAFKA_BOOTSTRAP        use an existing broker (host:port[,host:port]); `up` only checks that it
#                          accepts TCP connections, `down` leaves it alone.
#   KAFKA_VERSION          Kafka version (default below)
#   KAFKA_PORT             client listener port (default 9092), always on 127.0.0.1
#   KAFKA_CONTROLLER_PORT  KRaft controller port (default 9093), always on 127.0.0.1
#   LIFECYCLE_KAFKA_HOME   cache/state root (default ~/.cache/lifecycle-kafka)
#   KAFKA_DATA_DIR         broker data (default $LIFECYCLE_KAFKA_HOME/<version>/data[-<instance>])
#   KAFKA_INSTANCE         a name for a second broker beside the default one (its own pid file
#                          and data; give it other ports): the fault tests stop and start one
#                          of their own without touching the broker other tests use
#   KAFKA_START_TIMEOUT    seconds to wait for readiness (default 60)
#   KAFKA_SECURITY         plaintext (default) or sasl_ssl: sasl_ssl adds a SASL_SSL listener
#                          (SCRAM-SHA-512 and -256) on KAFKA_SASL_PORT and a mutual-TLS SSL
#                          listener (client certificate required) on KAFKA_SSL_PORT, with a CA,
#                          a broker and a client certificate generated under <data>/tls; the
#                          plain listener on KAFKA_PORT stays (loopback only) for this script's
#                          readiness check and the broker's own traffic
#   KAFKA_SASL_PORT        SASL_SSL listener port (default 9093; the controller then moves to 9094)
#   KAFKA_SSL_PORT         mutual-TLS listener port (default 9095)
#   KAFKA_SASL_USERNAME    SCRAM user created at format time (default lifecycle)
#   KAFKA_SASL_PASSWORD    its password (default lifecycle-secret)
#   KAFKA_HEAP_OPTS        JVM heap options (default -Xms256m -Xmx512m)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEFAULT_KAFKA_VERSION="4.4.0"

KAFKA_HOME_DIR="${LIFECYCLE_KAFKA_HOME:-${HOME:-/tmp}/.cache/lifecycle-kafka}"
INSTANCE_SUFFIX="${KAFKA_INSTANCE:+-$KAFKA_INSTANCE}"
RUN_DIR="$KAFKA_HOME_DIR/run$INSTANCE_SUFFIX"
PID_FILE="$RUN_DIR/kafka.pid"
STATE_FILE="$RUN_DIR/kafka.state"
LOCK_FILE="$RUN_DIR/lock"
HOST="127.0.0.1"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
STOP_TIMEOUT=30

say() { printf 'kafka: %s\n' "$*"; }
die() { printf 'kafka: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

# Settings of the broker this command is about. A running broker's own settings (recorded at
# start in $STATE_FILE) win over the environment, so `down`/`status`/`logs` always find it.
load_settings() {
    VERSION="${KAFKA_VERSION:-$DEFAULT_KAFKA_VERSION}"
    PORT="${KAFKA_PORT:-9092}"
    SECURITY="${KAFKA_SECURITY:-plaintext}"
    case "$SECURITY" in
        plaintext) CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}" ;;
        sasl_ssl) CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9094}" ;;
        *) die "KAFKA_SECURITY=$SECURITY: use plaintext or sasl_ssl" ;;
    esac
    SASL_PORT="${KAFKA_SASL_PORT:-9093}"
    SSL_PORT="${KAFKA_SSL_PORT:-9095}"
    SASL_USERNAME="${KAFKA_SASL_USERNAME:-lifecycle}"
    SASL_PASSWORD="${KAFKA_SASL_PASSWORD:-lifecycle-secret}"
    DATA_DIR="${KAFKA_DATA_DIR:-$KAFKA_HOME_DIR/$VERSION/data$INSTANCE_SUFFIX}"
    if [[ "${1:-}" == "--running" && -f "$STATE_FILE" ]] && running_pid >/dev/null; then
        SECURITY=plaintext # state files written before KAFKA_SECURITY existed
        # shellcheck disable=SC1090
        source "$STATE_FILE"
    fi
    LIBS_DIR="$KAFKA_HOME_DIR/$VERSION/libs"
    LOG_DIR="$DATA_DIR/logs"
    LOG_FILE="$LOG_DIR/server.log"
    OUT_FILE="$LOG_DIR/kafka.out"
    CONFIG_FILE="$DATA_DIR/server.properties"
    KRAFT_DIR="$DATA_DIR/kraft-logs"
    CLUSTER_ID_FILE="$DATA_DIR/cluster.id"
    TLS_DIR="$DATA_DIR/tls"
    LOG4J_CONFIG="$SCRIPT_DIR/log4j2.properties"
}

# ---------------------------------------------------------------------------- helpers

# Prints the pid of our running broker, or fails. Checks that the pid really is a Kafka JVM
# (pids get reused after a reboot or a crash).
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    [[ -n "$pid" ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'kafka\.Kafka' || return 1
    fi
    echo "$pid"
}

# tcp_open HOST PORT: does something accept TCP connections there?
tcp_open() {
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# broker_ready HOST PORT: a Metadata request (v4) succeeds and lists at least one live broker and a
# controller, i.e. the broker is unfenced and can create topics. Falls back to a TCP check when
# python3 is missing.
broker_ready() {
    if ! command -v python3 >/dev/null 2>&1; then
        tcp_open "$1" "$2"
        return
    fi
    python3 - "$1" "$2" <<'PY' 2>/dev/null
import socket, struct, sys

host, port = sys.argv[1], int(sys.argv[2])
client = b"lifecycle-kafka-sh"
# Request header v1 + Metadata v4 body: no topics, no auto-creation.
body = struct.pack(">hhih", 3, 4, 7, len(client)) + client + struct.pack(">ib", 0, 0)
with socket.create_connection((host, port), timeout=3) as s:
    s.settimeout(3)
    s.sendall(struct.pack(">i", len(body)) + body)

    def read(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    (size,) = struct.unpack(">i", read(4))
    resp = read(size)
pos = 0

def take(fmt: str):
    global pos
    vals = struct.unpack_from(fmt, resp, pos)
    pos += struct.calcsize(fmt)
    return vals

def string():
    global pos
    (n,) = take(">h")
    if n < 0:
        return None
    s = resp[pos : pos + n].decode()
    pos += n
    return s

corr, _throttle, nbrokers = take(">iii")
assert corr == 7
for _ in range(nbrokers):
    take(">i"); string(); take(">i"); string()
string()  # cluster id
(controller,) = take(">i")
sys.exit(0 if nbrokers > 0 and controller >= 0 else 1)
PY
}

java_args() {
    # shellcheck disable=SC2206
    local heap=(${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m})
    JAVA_ARGS=(
        "${heap[@]}"
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
        -Djava.awt.headless=true
        "-Dkafka.logs.dir=$LOG_DIR"
        "-Dlog4j2.configurationFile=$LOG4J_CONFIG"
        -cp "$LIBS_DIR/*"
    )
}

check_java() {
    command -v java >/dev/null 2>&1 ||
        die "java not found; Kafka $VERSION needs Java 17+ (run: bash deploy/system-deps.sh)"
    local major
    major="$(java -XshowSettings:properties -version 2>&1 |
        sed -n 's/^ *java\.specification\.version = \([0-9.]*\).*/\1/p')"
    major="${major#1.}"
    major="${major%%.*}"
    if [[ -n "$major" ]] && ((major < 17)); then
        die "Java $major found; Kafka $VERSION needs Java 17+"
    fi
}

# Download the broker jars into $LIBS_DIR once; later calls do not touch the network or Maven.
fetch_libs() {
    if [[ -f "$LIBS_DIR/.complete" ]]; then
        return
    fi
    command -v mvn >/dev/null 2>&1 ||
        die "mvn not found; it is needed once to fetch the Kafka jars (run: bash deploy/system-deps.sh)"
    say "fetching Apache Kafka $VERSION jars with Maven (first run only) ..."
    local tmp="$LIBS_DIR.tmp.$$"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    trap 'rm -rf "$tmp"' EXIT
    local mvn_log="$KAFKA_HOME_DIR/$VERSION/mvn.log"
    if ! mvn -B -Dstyle.color=never -f "$SCRIPT_DIR/pom.xml" \
        "-Dkafka.version=$VERSION" dependency:copy-dependencies \
        -DincludeScope=runtime "-DoutputDirectory=$tmp" >"$mvn_log" 2>&1; then
        grep -E 'ERROR|FAIL' "$mvn_log" | head -n 20 >&2 || true
        rm -rf "$tmp"
        die "Maven could not fetch org.apache.kafka:kafka_2.13:$VERSION (full output: $mvn_log)"
    fi
    ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || { rm -rf "$tmp"; die "no kafka_2.13 jar was fetched"; }
    touch "$tmp/.complete"
    rm -rf "$LIBS_DIR"
    mv "$tmp" "$LIBS_DIR"
    trap - EXIT
    say "cached $(find "$LIBS_DIR" -name '*.jar' | wc -l) jars in $LIBS_DIR"
}

# The secret of the generated broker keystore (a local test broker's, not a real secret).
KEYSTORE_PASSWORD="lifecycle-local"

# make_certs: a CA, a broker certificate (for 127.0.0.1 and localhost) in a PKCS12 keystore,
# and a client certificate for the mutual-TLS listener, generated once per data dir.
make_certs() {
    [[ -s "$TLS_DIR/broker.p12" && -s "$TLS_DIR/client.pem" ]] && return
    command -v openssl >/dev/null 2>&1 || die "openssl not found; it generates the broker's certificates"
    mkdir -p "$TLS_DIR"
    local d="$TLS_DIR" ext="$TLS_DIR/ext.cnf"
    say "generating a CA and broker and client certificates in $d"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout "$d/ca.key" \
        -out "$d/ca.pem" -subj "/CN=lifecycle local test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        >/dev/null 2>&1 || die "openssl could not make the CA"
    cat >"$ext" <<EOF
[broker]
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
[client]
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EOF
    local who
    for who in broker client; do
        openssl req -newkey rsa:2048 -nodes -sha256 -keyout "$d/$who.key" -out "$d/$who.csr" \
            -subj "/CN=lifecycle-$who" >/dev/null 2>&1 || die "openssl could not make the $who key"
        openssl x509 -req -sha256 -days 3650 -in "$d/$who.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" \
            -CAcreateserial -out "$d/$who.pem" -extfile "$ext" -extensions "$who" >/dev/null 2>&1 ||
            die "openssl could not sign the $who certificate"
    done
    openssl pkcs12 -export -in "$d/broker.pem" -inkey "$d/broker.key" -certfile "$d/ca.pem" \
        -name broker -out "$d/broker.p12" -passout "pass:$KEYSTORE_PASSWORD" >/dev/null 2>&1 ||
        die "openssl could not write the broker keystore"
    chmod 600 "$d/ca.key" "$d/broker.key" "$d/client.key"
    rm -f "$d/broker.csr" "$d/client.csr"
}

write_config() {
    mkdir -p "$KRAFT_DIR" "$LOG_DIR"
    local listeners="PLAINTEXT://$HOST:$PORT" advertised protocols="PLAINTEXT:PLAINTEXT"
    if [[ "$SECURITY" == sasl_ssl ]]; then
        listeners+=",SASL_SSL://$HOST:$SASL_PORT,SSL://$HOST:$SSL_PORT"
        protocols+=",SASL_SSL:SASL_SSL,SSL:SSL"
    fi
    advertised="$listeners"
    listeners+=",CONTROLLER://$HOST:$CONTROLLER_PORT"
    protocols+=",CONTROLLER:PLAINTEXT"
    cat >"$CONFIG_FILE" <<EOF
# Written by deploy/kafka/kafka.sh on every start; edits here are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$KRAFT_DIR

num.partitions=8
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true

# A single broker: every internal topic has exactly one replica, or consumer groups and
# transactions (exactly-once) never become available.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

# Small internal topics: created on first use, so fewer partitions means a faster first
# consumer group / first transactional producer in a test.
offsets.topic.num.partitions=8
transaction.state.log.num.partitions=8
share.coordinator.state.topic.num.partitions=4

log.retention.hours=24
EOF
    if [[ "$SECURITY" == sasl_ssl ]]; then
        cat >>"$CONFIG_FILE" <<EOF

# KAFKA_SECURITY=sasl_ssl: SCRAM users live in the cluster metadata (added at format time).
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/broker.p12
ssl.keystore.password=$KEYSTORE_PASSWORD
ssl.key.password=$KEYSTORE_PASSWORD
listener.name.ssl.ssl.client.auth=required
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$TLS_DIR/ca.pem
EOF
    fi
}

format_storage() {
    local scram_marker="$KRAFT_DIR/.scram-users"
    if [[ -f "$KRAFT_DIR/meta.properties" ]]; then
        if [[ "$SECURITY" == sasl_ssl && ! -f "$scram_marker" ]]; then
            die "$DATA_DIR was formatted without KAFKA_SECURITY=sasl_ssl, so it has no SCRAM users; use another KAFKA_INSTANCE (or KAFKA_DATA_DIR), or wipe it"
        fi
        return
    fi
    local cid
    if [[ -s "$CLUSTER_ID_FILE" ]]; then
        cid="$(cat "$CLUSTER_ID_FILE")"
    else
        java_args
        cid="$(java "${JAVA_ARGS[@]}" kafka.tools.StorageTool random-uuid | tail -n 1)"
        [[ -n "$cid" ]] || die "kafka.tools.StorageTool random-uuid printed nothing"
        echo "$cid" >"$CLUSTER_ID_FILE"
    fi
    say "formatting storage in $KRAFT_DIR (cluster id $cid)"
    java_args
    local scram=()
    if [[ "$SECURITY" == sasl_ssl ]]; then
        scram=(--add-scram "SCRAM-SHA-512=[name=$SASL_USERNAME,password=$SASL_PASSWORD]"
            --add-scram "SCRAM-SHA-256=[name=$SASL_USERNAME,password=$SASL_PASSWORD]")
    fi
    java "${JAVA_ARGS[@]}" kafka.tools.StorageTool format -t "$cid" -c "$CONFIG_FILE" \
        --ignore-formatted "${scram[@]}" >/dev/null ||
        die "formatting storage failed (see $LOG_FILE)"
    if [[ "$SECURITY" == sasl_ssl ]]; then
        echo "$SASL_USERNAME" >"$scram_marker"
    fi
}

# Where a client finds the secured listeners (after `up` with KAFKA_SECURITY=sasl_ssl).
say_security() {
    [[ "${SECURITY:-plaintext}" == sasl_ssl ]] || return 0
    say "SASL_SSL (SCRAM-SHA-512, user $SASL_USERNAME) on $HOST:$SASL_PORT; mutual TLS on $HOST:$SSL_PORT"
    say "CA file: $TLS_DIR/ca.pem (client certificate $TLS_DIR/client.pem, key $TLS_DIR/client.key)"
}

# Byte offset of server.log when this start began, so a failure shows only this start's lines.
LOG_START_OFFSET=0

show_log_tail() {
    if [[ -s "$OUT_FILE" ]]; then
        printf -- '---- %s ----\n' "$OUT_FILE" >&2
        tail -n 40 "$OUT_FILE" >&2
    fi
    if [[ -f "$LOG_FILE" ]] && (($(stat -c %s "$LOG_FILE") > LOG_START_OFFSET)); then
        printf -- '---- last lines of %s ----\n' "$LOG_FILE" >&2
        tail -c +"$((LOG_START_OFFSET + 1))" "$LOG_FILE" | tail -n 40 >&2
    else
        printf -- '---- (nothing new in %s) ----\n' "$LOG_FILE" >&2
    fi
}

# stop_pid PID: SIGTERM, wait up to $STOP_TIMEOUT s, then SIGKILL.
stop_pid() {
    local pid="$1" waited=0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= STOP_TIMEOUT * 5)); then
            say "broker (pid $pid) still running after ${STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
            break
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
}

with_lock() {
    mkdir -p "$RUN_DIR"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$LOCK_FILE"
        flock -w 600 9 || die "another kafka.sh is still running (lock $LOCK_FILE)"
    fi
}

# ---------------------------------------------------------------------------- external broker

external_check() {
    local entry host port ok=""
    IFS=',' read -ra entries <<<"$KAFKA_BOOTSTRAP"
    for entry in "${entries[@]}"; do
        entry="${entry// /}"
        entry="${entry#*://}"
        [[ -n "$entry" ]] || continue
        host="${entry%:*}"
        port="${entry##*:}"
        if [[ "$host" == "$entry" || -z "$port" ]]; then
            port=9092
        fi
        host="${host#[}"
        host="${host%]}"
        if tcp_open "$host" "$port"; then
            ok="$host:$port"
            break
        fi
    done
    [[ -n "$ok" ]] ||
        die "KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP: no broker accepts TCP connections there (unset KAFKA_BOOTSTRAP to start a local one)"
    echo "$ok"
}

# ---------------------------------------------------------------------------- commands

cmd_up() {
    if [[ -n "${KAFKA_BOOTSTRAP:-}" ]]; then
        local ok
        ok="$(external_check)"
        say "using existing broker at $ok (KAFKA_BOOTSTRAP); nothing started"
        return 0
    fi
    with_lock
    load_settings --running
    local pid
    if pid="$(running_pid)"; then
        if [[ "${KAFKA_SECURITY:-plaintext}" != "$SECURITY" ]]; then
            die "a $SECURITY broker is already running here (pid $pid, $HOST:$PORT); for a $KAFKA_SECURITY one beside it set KAFKA_INSTANCE and other ports"
        fi
        if broker_ready "$HOST" "$PORT"; then
            say "already running (pid $pid) on $HOST:$PORT"
            say_security
            return 0
        fi
        say "broker (pid $pid) is running but not ready yet; waiting"
        wait_ready "$pid"
        say_security
        return 0
    fi
    rm -f "$PID_FILE" "$STATE_FILE"
    load_settings

    if tcp_open "$HOST" "$PORT"; then
        die "$HOST:$PORT is already in use by another process (not started by this script). Stop it, set KAFKA_PORT, or set KAFKA_BOOTSTRAP=$HOST:$PORT to use it"
    fi
    if tcp_open "$HOST" "$CONTROLLER_PORT"; then
        die "controller port $HOST:$CONTROLLER_PORT is already in use; set KAFKA_CONTROLLER_PORT"
    fi
    if [[ "$SECURITY" == sasl_ssl ]]; then
        local p
        for p in "$SASL_PORT" "$SSL_PORT"; do
            ! tcp_open "$HOST" "$p" ||
                die "$HOST:$p is already in use; set KAFKA_SASL_PORT / KAFKA_SSL_PORT"
        done
    fi

    check_java
    fetch_libs
    [[ "$SECURITY" == plaintext ]] || make_certs
    write_config
    format_storage

    say "starting Apache Kafka $VERSION on $HOST:$PORT (data: $DATA_DIR)"
    java_args
    : >"$OUT_FILE"
    LOG_START_OFFSET="$(stat -c %s "$LOG_FILE" 2>/dev/null || echo 0)"
    # The inner shell records its own pid and then becomes the JVM, so the pid file is exact.
    # fd 9 (our lock) is closed so the broker does not hold the lock for its whole life.
    setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$PID_FILE" \
        java "${JAVA_ARGS[@]}" kafka.Kafka "$CONFIG_FILE" >>"$OUT_FILE" 2>&1 </dev/null 9>&- &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s "$PID_FILE" ]] && break
        sleep 0.1
    done
    pid="$(tr -dc '0-9' <"$PID_FILE" 2>/dev/null || true)"
    [[ -n "$pid" ]] || die "the broker did not start (no pid file $PID_FILE)"
    cat >"$STATE_FILE" <<EOF
VERSION='$VERSION'
PORT='$PORT'
CONTROLLER_PORT='$CONTROLLER_PORT'
DATA_DIR='$DATA_DIR'
SECURITY='$SECURITY'
SASL_PORT='$SASL_PORT'
SSL_PORT='$SSL_PORT'
SASL_USERNAME='$SASL_USERNAME'
EOF
    wait_ready "$pid"
    say_security
}

# wait_ready PID: until the broker answers a Metadata request; on failure show the log and stop it.
wait_ready() {
    local pid="$1" start=$SECONDS
    while ((SECONDS - start < START_TIMEOUT)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log_tail
            rm -f "$PID_FILE" "$STATE_FILE"
            die "the broker exited during startup (logs above; full log: $LOG_FILE)"
        fi
        if broker_ready "$HOST" "$PORT"; then
            say "ready on $HOST:$PORT (pid $pid, $((SECONDS - start))s)"
            return 0
        fi
        sleep 0.5
    done
    show_log_tail
    say "stopping the broker that did not become ready"
    stop_pid "$pid"
    rm -f "$PID_FILE" "$STATE_FILE"
    die "the broker was not ready on $HOST:$PORT within ${START_TIMEOUT}s (logs above; full log: $LOG_FILE)"
}

cmd_down() {
    local wipe=""
    while (($#)); do
        case "$1" in
            --wipe) wipe=1 ;;
            *) die "down: unknown option $1 (only --wipe)" ;;
        esac
        shift
    done
    if [[ -n "${KAFKA_BOOTSTRAP:-}" ]]; then
        say "KAFKA_BOOTSTRAP is set; leaving the broker at $KAFKA_BOOTSTRAP alone"
        return 0
    fi
    with_lock
    load_settings --running
    local pid
    if pid="$(running_pid)"; then
        say "stopping broker (pid $pid) ..."
        stop_pid "$pid"
        say "stopped"
    else
        say "not running"
    fi
    rm -f "$PID_FILE" "$STATE_FILE"
    if [[ -n "$wipe" ]]; then
        # Only the data dir; the cached jars stay.
        if [[ -d "$DATA_DIR" ]]; then
            rm -rf "$DATA_DIR"
            say "wiped $DATA_DIR"
        else
            say "nothing to wipe ($DATA_DIR does not exist)"
        fi
    fi
}

cmd_status() {
    if [[ -n "${KAFKA_BOOTSTRAP:-}" ]]; then
        local ok
        if ok="$(external_check 2>/dev/null)"; then
            say "external broker (KAFKA_BOOTSTRAP) accepts connections at $ok"
            return 0
        fi
        say "external broker (KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP) does not accept connections"
        return 3
    fi
    load_settings --running
    local pid
    if pid="$(running_pid)"; then
        local rc=0 state="running and ready"
        broker_ready "$HOST" "$PORT" || { rc=3; state="running but NOT ready"; }
        say "$state: Apache Kafka $VERSION, pid $pid, bootstrap $HOST:$PORT"
        say "data $DATA_DIR, log $LOG_FILE"
        return "$rc"
    fi
    say "not running (data dir $DATA_DIR)"
    return 3
}

cmd_logs() {
    local follow="" lines=100
    while (($#)); do
        case "$1" in
            -f | --follow) follow=1 ;;
            -n) lines="${2:?-n needs a number}"; shift ;;
            *) die "logs: unknown option $1 (use -f, -n N)" ;;
        esac
        shift
    done
    load_settings --running
    [[ -f "$LOG_FILE" ]] || die "no broker log yet ($LOG_FILE)"
    if [[ -n "$follow" ]]; then
        exec tail -n "$lines" -F "$LOG_FILE"
    fi
    tail -n "$lines" "$LOG_FILE"
}

main() {
    local cmd="${1:-}"
    (($#)) && shift
    case "$cmd" in
        up) cmd_up "$@" ;;
        down) cmd_down "$@" ;;
        wipe) cmd_down --wipe "$@" ;;
        status) cmd_status "$@" ;;
        logs) cmd_logs "$@" ;;
        -h | --help | help) usage ;;
        *)
            usage >&2
            exit 2
            ;;
    esac
}

main "$@"
