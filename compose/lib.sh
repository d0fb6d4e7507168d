# shellcheck shell=bash
# Shared helpers for the compose/ scripts: settings, logging, package installs,
# PID-file bookkeeping and health waits. Sourced, never run.

set -euo pipefail

COMPOSE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$COMPOSE_DIR/.." && pwd)"

# One directory holds every byte of local state; `infra reset` removes it.
# It lives outside the clone so a fresh checkout reuses a running stack, and
# under /var so the postgres user can traverse it when we run as root.
FRAMEWORKS_DATA_DIR="${FRAMEWORKS_DATA_DIR:-/var/lib/frameworks-dev}"
# Downloads (Kafka's jars) and the cargo target dir: kept across clones and resets.
FRAMEWORKS_CACHE_DIR="${FRAMEWORKS_CACHE_DIR:-/var/cache/frameworks-dev}"

FRAMEWORKS_KAFKA_PORT="${FRAMEWORKS_KAFKA_PORT:-9092}"
FRAMEWORKS_KAFKA_CONTROLLER_PORT="${FRAMEWORKS_KAFKA_CONTROLLER_PORT:-9093}"
FRAMEWORKS_KAFKA_HEAP="${FRAMEWORKS_KAFKA_HEAP:-1g}"
# Kafka nodes (broker and controller each): 1, or 3 for a cluster that keeps
# every domain topic on three brokers and goes on with one of them down.
FRAMEWORKS_KAFKA_NODES="${FRAMEWORKS_KAFKA_NODES:-1}"
FRAMEWORKS_POSTGRES_PORT="${FRAMEWORKS_POSTGRES_PORT:-5432}"
FRAMEWORKS_REDIS_PORT="${FRAMEWORKS_REDIS_PORT:-6379}"
FRAMEWORKS_CLICKHOUSE_HTTP_PORT="${FRAMEWORKS_CLICKHOUSE_HTTP_PORT:-8123}"
FRAMEWORKS_CLICKHOUSE_TCP_PORT="${FRAMEWORKS_CLICKHOUSE_TCP_PORT:-9000}"
# Seconds each component gets to answer its health check after a start.
FRAMEWORKS_START_TIMEOUT="${FRAMEWORKS_START_TIMEOUT:-90}"

# shellcheck disable=SC2034 # read by the scripts that source this file
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$COMPOSE_DIR/kafka/pom.xml")"

RUN_DIR="$FRAMEWORKS_DATA_DIR/run"
LOG_DIR="$FRAMEWORKS_DATA_DIR/logs"

say() { printf '%s\n' "$*" >&2; }
step() { printf '==> %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

validate_settings() {
    local name value
    for name in FRAMEWORKS_KAFKA_PORT FRAMEWORKS_KAFKA_CONTROLLER_PORT FRAMEWORKS_POSTGRES_PORT \
        FRAMEWORKS_REDIS_PORT FRAMEWORKS_CLICKHOUSE_HTTP_PORT FRAMEWORKS_CLICKHOUSE_TCP_PORT \
        FRAMEWORKS_MIST_API_PORT FRAMEWORKS_MIST_HTTP_PORT FRAMEWORKS_MIST_RTMP_PORT FRAMEWORKS_MIST_SRT_PORT \
        FRAMEWORKS_MIST_UDP_API_PORT; do
        value="${!name}"
        if ! is_uint "$value" || ((value < 1 || value > 65535)); then
            die "$name='$value' is not a TCP port (1-65535)"
        fi
    done
    is_uint "$FRAMEWORKS_START_TIMEOUT" || die "FRAMEWORKS_START_TIMEOUT='$FRAMEWORKS_START_TIMEOUT' is not a number of seconds"
    [[ "$FRAMEWORKS_KAFKA_NODES" == 1 || "$FRAMEWORKS_KAFKA_NODES" == 3 ]] ||
        die "FRAMEWORKS_KAFKA_NODES='$FRAMEWORKS_KAFKA_NODES' is neither 1 nor 3"
    [[ "$FRAMEWORKS_KAFKA_HEAP" =~ ^[0-9]+[mg]$ ]] || die "FRAMEWORKS_KAFKA_HEAP='$FRAMEWORKS_KAFKA_HEAP' is not a JVM heap size such as 512m or 1g"
    [[ "$FRAMEWORKS_DATA_DIR" = /* ]] || die "FRAMEWORKS_DATA_DIR='$FRAMEWORKS_DATA_DIR' must be an absolute path"
    [[ "$FRAMEWORKS_CACHE_DIR" = /* ]] || die "FRAMEWORKS_CACHE_DIR='$FRAMEWORKS_CACHE_DIR' must be an absolute path"
}

as_root() {
    if ((EUID == 0)); then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "'$*' needs root and sudo is not available"
    fi
}

APT_UPDATED=""
# ensure_packages PKG...: installs the Debian packages that are missing.
ensure_packages() {
    local missing=() pkg log="$FRAMEWORKS_CACHE_DIR/apt.log"
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    step "installing Debian packages: ${missing[*]}"
    mkdir -p "$FRAMEWORKS_CACHE_DIR"
    if [[ -z "$APT_UPDATED" ]]; then
        as_root apt-get update >"$log" 2>&1 || die "apt-get update failed; see $log"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1 ||
        die "failed to install Debian packages ${missing[*]}; see $log"
}

# port_owner PORT: prints the pid listening on 127.0.0.1:PORT (or any address), if any.
port_owner() {
    ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1
}

port_in_use() {
    [[ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]]
}

# pid_of COMPONENT: the pid recorded for COMPONENT if that process is still ours.
pid_of() {
    local component="$1" pidfile="$RUN_DIR/$1.pid" pid expect
    [[ -f "$pidfile" ]] || return 1
    pid="$(head -n1 "$pidfile")"
    is_uint "$pid" || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    # A recycled pid must never be mistaken for ours: the command line has to match.
    expect="$(sed -n 2p "$pidfile")"
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$expect" || return 1
    printf '%s\n' "$pid"
}

# record_pid COMPONENT PID MARKER PORT: MARKER is a fragment of the command line that
# identifies the process; PORT is the main port it was started on.
record_pid() {
    mkdir -p "$RUN_DIR"
    printf '%s\n%s\n%s\n' "$2" "$3" "$4" >"$RUN_DIR/$1.pid"
}

# require_free_port COMPONENT SETTING PORT
require_free_port() {
    local owner
    if port_in_use "$3"; then
        owner="$(port_owner "$3")"
        die "$1 cannot start: port $3 ($2) is already taken${owner:+ by pid $owner}, a process these scripts did not start. Stop it or set $2 to a free port."
    fi
}

# wait_healthy COMPONENT PID CHECK-FUNCTION LOGFILE
wait_healthy() {
    local component="$1" pid="$2" check="$3" log="$4" deadline=$((SECONDS + FRAMEWORKS_START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "--- last lines of $log ---"
            tail -n 20 "$log" >&2 || true
            die "$component exited during start-up; see $log"
        fi
        if "$check"; then
            return 0
        fi
        sleep 0.5
    done
    say "--- last lines of $log ---"
    tail -n 20 "$log" >&2 || true
    die "$component did not become healthy within ${FRAMEWORKS_START_TIMEOUT}s (FRAMEWORKS_START_TIMEOUT); see $log"
}

# stop_pid COMPONENT SIGNAL: stops the process recorded for COMPONENT, and only it.
stop_component() {
    local component="$1" signal="$2" pid
    if ! pid="$(pid_of "$component")"; then
        rm -f "$RUN_DIR/$component.pid"
        say "$component: not running"
        return 0
    fi
    kill -s "$signal" "$pid"
    local deadline=$((SECONDS + 60))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        say "$component: pid $pid ignored SIG$signal for 60s, sending SIGKILL"
        kill -s KILL "$pid"
    fi
    rm -f "$RUN_DIR/$component.pid"
    say "$component: stopped (pid $pid)"
}

# Cargo's build output is shared by every clone on this machine, so a fresh
# clone (and CI) reuses what an earlier run compiled.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$FRAMEWORKS_CACHE_DIR/target}"
# Incremental caches grow with every version of the sources ever compiled
# and do little for clean clones; set CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
FRAMEWORKS_BIN="$CARGO_TARGET_DIR/debug/frameworks"

ensure_rust() {
    if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    command -v cargo >/dev/null || die "cargo is not installed; install Rust (rustup) first"
    # Linking librdkafka's bundled build needs a C toolchain and these headers.
    ensure_packages build-essential pkg-config zlib1g-dev libssl-dev
}

# Checking tools the test command runs, each pinned and built once into
# $FRAMEWORKS_CACHE_DIR/tools (its own target dir, outside the clone).
# shellcheck disable=SC2034 # read by compose/test
CARGO_MACHETE_VERSION=0.9.2
# shellcheck disable=SC2034 # read by compose/test
CARGO_DENY_VERSION=0.19.0
TOOLS_DIR="$FRAMEWORKS_CACHE_DIR/tools"
export PATH="$TOOLS_DIR/bin:$PATH"

# ensure_cargo_tool CRATE VERSION: installs that version of CRATE's binary
# from crates.io unless it is there already.
ensure_cargo_tool() {
    local crate="$1" version="$2"
    if [[ -x "$TOOLS_DIR/bin/$crate" ]] && "$TOOLS_DIR/bin/$crate" --version 2>/dev/null | grep -qF "$version"; then
        return 0
    fi
    step "installing $crate $version into $TOOLS_DIR"
    CARGO_TARGET_DIR="$TOOLS_DIR/target" cargo install --locked --quiet \
        --root "$TOOLS_DIR" --version "$version" "$crate" || die "could not install $crate $version"
}

build_frameworks() {
    step "building the frameworks binary and the Mist simulator (target dir $CARGO_TARGET_DIR)"
    (cd "$REPO_DIR" && cargo build --locked -p frameworks --bin frameworks \
        -p frameworks-mist-simulator --bin frameworks-mist-simulator) || die "cargo build failed"
}

# The platform's own long-running roles, in start order. Each serves
# Prometheus metrics and /health.
# shellcheck disable=SC2034 # read by the scripts that source this file
ROLES=(relay projector live-state analytics bridge balancer)
FRAMEWORKS_RELAY_METRICS_LISTEN="${FRAMEWORKS_RELAY_METRICS_LISTEN:-127.0.0.1:18039}"
FRAMEWORKS_PROJECTOR_METRICS_LISTEN="${FRAMEWORKS_PROJECTOR_METRICS_LISTEN:-127.0.0.1:18049}"
FRAMEWORKS_LIVE_METRICS_LISTEN="${FRAMEWORKS_LIVE_METRICS_LISTEN:-127.0.0.1:18059}"
FRAMEWORKS_ANALYTICS_METRICS_LISTEN="${FRAMEWORKS_ANALYTICS_METRICS_LISTEN:-127.0.0.1:18069}"
# The bridge serves /metrics beside /graphql on its one port.
FRAMEWORKS_BRIDGE_LISTEN="${FRAMEWORKS_BRIDGE_LISTEN:-127.0.0.1:18000}"
FRAMEWORKS_BALANCER_METRICS_LISTEN="${FRAMEWORKS_BALANCER_METRICS_LISTEN:-127.0.0.1:18079}"
FRAMEWORKS_BALANCER_GRPC_LISTEN="${FRAMEWORKS_BALANCER_GRPC_LISTEN:-127.0.0.1:18029}"
FRAMEWORKS_BALANCER_HTTP_LISTEN="${FRAMEWORKS_BALANCER_HTTP_LISTEN:-127.0.0.1:18008}"
# The simulated edge (compose/up): `frameworks edge` in front of a simulated MistServer.
FRAMEWORKS_EDGE_LISTEN="${FRAMEWORKS_EDGE_LISTEN:-127.0.0.1:18007}"
FRAMEWORKS_EDGE_METRICS_LISTEN="${FRAMEWORKS_EDGE_METRICS_LISTEN:-127.0.0.1:18089}"
FRAMEWORKS_MIST_SIM_LISTEN="${FRAMEWORKS_MIST_SIM_LISTEN:-127.0.0.1:14242}"
# The real MistServer compose/up runs (FRAMEWORKS_EDGE_MIST=real), on 127.0.0.1.
FRAMEWORKS_MIST_API_PORT="${FRAMEWORKS_MIST_API_PORT:-14243}"
FRAMEWORKS_MIST_HTTP_PORT="${FRAMEWORKS_MIST_HTTP_PORT:-18080}"
FRAMEWORKS_MIST_RTMP_PORT="${FRAMEWORKS_MIST_RTMP_PORT:-11935}"
FRAMEWORKS_MIST_SRT_PORT="${FRAMEWORKS_MIST_SRT_PORT:-18889}"
FRAMEWORKS_MIST_UDP_API_PORT="${FRAMEWORKS_MIST_UDP_API_PORT:-14244}"
# shellcheck disable=SC2034 # read by the scripts that source this file
MIST_SIMULATOR_BIN="$CARGO_TARGET_DIR/debug/frameworks-mist-simulator"

role_metrics() {
    case "$1" in
    relay) printf '%s\n' "$FRAMEWORKS_RELAY_METRICS_LISTEN" ;;
    projector) printf '%s\n' "$FRAMEWORKS_PROJECTOR_METRICS_LISTEN" ;;
    live-state) printf '%s\n' "$FRAMEWORKS_LIVE_METRICS_LISTEN" ;;
    analytics) printf '%s\n' "$FRAMEWORKS_ANALYTICS_METRICS_LISTEN" ;;
    bridge) printf '%s\n' "$FRAMEWORKS_BRIDGE_LISTEN" ;;
    balancer) printf '%s\n' "$FRAMEWORKS_BALANCER_METRICS_LISTEN" ;;
    edge) printf '%s\n' "$FRAMEWORKS_EDGE_METRICS_LISTEN" ;;
    esac
}

role_metrics_setting() {
    case "$1" in
    relay) echo FRAMEWORKS_RELAY_METRICS_LISTEN ;;
    projector) echo FRAMEWORKS_PROJECTOR_METRICS_LISTEN ;;
    live-state) echo FRAMEWORKS_LIVE_METRICS_LISTEN ;;
    analytics) echo FRAMEWORKS_ANALYTICS_METRICS_LISTEN ;;
    bridge) echo FRAMEWORKS_BRIDGE_LISTEN ;;
    balancer) echo FRAMEWORKS_BALANCER_METRICS_LISTEN ;;
    edge) echo FRAMEWORKS_EDGE_METRICS_LISTEN ;;
    esac
}

# local_secret NAME COMMAND...: the secret in $FRAMEWORKS_DATA_DIR/secrets/NAME,
# made by COMMAND the first time (mode 0600), so restarts keep sessions and
# sealed data readable.
local_secret() {
    local name="$1" file="$FRAMEWORKS_DATA_DIR/secrets/$1"
    shift
    if [[ ! -s "$file" ]]; then
        mkdir -p "$FRAMEWORKS_DATA_DIR/secrets"
        chmod 700 "$FRAMEWORKS_DATA_DIR/secrets"
        (umask 077 && "$@" >"$file.tmp" && mv "$file.tmp" "$file") || die "could not create the $name secret"
    fi
    cat "$file"
}

random_base64() { head -c "$1" /dev/urandom | base64 -w0; }

# A one-key data-key ring (`KEY_ID:BASE64`) for sealing secrets at rest.
dev_data_keys() { printf 'dev1:%s' "$(random_base64 32)"; }

# Healthy: /health answers 200 (every supervised task of the role is up);
# it is served beside /metrics.
role_healthy() { curl -fsS --max-time 2 "http://$(role_metrics "$ROLE")/health" >/dev/null 2>&1; }

# role_started: the role named by ROLE is healthy; dies at once if it
# already failed once during start-up (its supervisor would only start it
# again, to fail the same way, until FRAMEWORKS_START_TIMEOUT).
role_started() {
    local restarts
    read -r restarts _ <"$RUN_DIR/$ROLE.restarts" 2>/dev/null || restarts=0
    if ((restarts > 0)); then
        say "--- last lines of $LOG_DIR/$ROLE.log ---"
        tail -n 20 "$LOG_DIR/$ROLE.log" >&2 || true
        stop_component "$ROLE" TERM
        die "$ROLE exited during start-up; see $LOG_DIR/$ROLE.log"
    fi
    role_healthy
}

# start_role NAME: starts `frameworks NAME` under compose/supervise (which
# starts it again whenever it fails) unless it already runs the current binary.
start_role() {
    local name="$1" pid
    ROLE="$name"
    if pid="$(pid_of "$name")"; then
        if [[ "$FRAMEWORKS_BIN" -nt "$RUN_DIR/$name.pid" ]]; then
            say "$name: the binary was rebuilt; restarting"
            stop_component "$name" TERM
        elif role_healthy; then
            say "$name: already running (pid $pid)"
            return 0
        fi
    fi
    if ! pid_of "$name" >/dev/null; then
        local listen port
        listen="$(role_metrics "$name")"
        port="${listen##*:}"
        require_free_port "$name" "$(role_metrics_setting "$name")" "$port"
        step "$name: starting"
        # A new count: an earlier supervisor's would read as a failed start.
        mkdir -p "$RUN_DIR"
        printf '0 0 0\n' >"$RUN_DIR/$name.restarts"
        setsid "$COMPOSE_DIR/supervise" "$name" "$RUN_DIR/$name.restarts" "$FRAMEWORKS_BIN" "$name" \
            </dev/null >>"$LOG_DIR/$name.log" 2>&1 &
        pid=$!
        # The supervisor's command line holds the role's, which marks it as ours.
        record_pid "$name" "$pid" "$FRAMEWORKS_BIN $name" "$port"
    fi
    # The pid as started: until the child has exec'd, its command line is
    # still the shell's, and pid_of would not recognise it.
    wait_healthy "$name" "$pid" role_started "$LOG_DIR/$name.log"
    say "$name: running (pid $(pid_of "$name")), metrics at http://$(role_metrics "$name")/metrics"
}

# The client release the GraphQL contract is pinned to (tests/support's CLIENT).
CLIENT_PACKAGE="livepeer-frameworks==0.4.0"

# client_python: a Python in a virtualenv holding the published client, made
# once under the cache (the same one the Rust tests make and use).
client_python() {
    local venv="$FRAMEWORKS_CACHE_DIR/python/livepeer-frameworks-0.4.0"
    if ! "$venv/bin/python" -c 'import livepeer_frameworks' 2>/dev/null; then
        command -v python3 >/dev/null || ensure_packages python3
        python3 -c 'import ensurepip' 2>/dev/null || ensure_packages python3-venv
        python3 -m venv "$venv" >&2 || die "could not create the virtualenv $venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "$CLIENT_PACKAGE" >&2 ||
            die "pip could not install $CLIENT_PACKAGE"
    fi
    printf '%s\n' "$venv/bin/python"
}
