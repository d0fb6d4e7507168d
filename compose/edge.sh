# shellcheck shell=bash
# The edge compose/up runs, so that a newcomer sees streams go live and
# viewers come and go: a demo account with one stream and an edge cluster
# (made once, through the public API, and remembered in
# $FRAMEWORKS_DATA_DIR/demo.env), a MistServer, and `frameworks edge` in
# front of it, enrolled with the cluster's token. Sourced by compose/up and
# compose/down.
#
# FRAMEWORKS_EDGE_MIST chooses the MistServer:
#   real       (default) MistController built from the shared source by
#              compose/mist, every protocol on 127.0.0.1, camera discovery
#              off, with an ffmpeg test pattern pushing the demo stream over
#              RTMP for two minutes at a time;
#   simulated  the Mist simulator, which plays broadcasts by firing triggers
#              (no media), for precise control of what Mist says.

DEMO_ENV="$FRAMEWORKS_DATA_DIR/demo.env"
DEMO_EMAIL="demo@frameworks.localhost"
EDGE_DATA_DIR="$FRAMEWORKS_DATA_DIR/edge"
FRAMEWORKS_EDGE_MIST="${FRAMEWORKS_EDGE_MIST:-real}"
MIST_DATA_DIR="$FRAMEWORKS_DATA_DIR/mist"

# json_get PATH: the value at PATH (dot-separated keys) of the JSON on stdin.
json_get() {
    python3 -c 'import json, sys
value = json.load(sys.stdin)
for key in sys.argv[1].split("."):
    value = value[key]
print(value)' "$1"
}

# bridge_post PATH BODY [TOKEN]: POSTs JSON to the bridge; the body on stdout.
bridge_post() {
    curl -sS --max-time 30 -H 'content-type: application/json' \
        ${3:+-H "authorization: Bearer $3"} \
        --data "$2" "http://$FRAMEWORKS_BRIDGE_LISTEN$1"
}

# graphql QUERY TOKEN: runs a GraphQL document; fails on errors.
graphql() {
    local body answer
    body="$(python3 -c 'import json, sys; print(json.dumps({"query": sys.argv[1]}))' "$1")"
    answer="$(bridge_post /graphql "$body" "$2")" || die "the bridge did not answer"
    if python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin).get("errors") else 1)' <<<"$answer"; then
        die "the bridge refused a demo request: $answer"
    fi
    printf '%s\n' "$answer"
}

# ensure_demo: the demo account, stream and enrolment token, made once.
ensure_demo() {
    [[ -s "$DEMO_ENV" ]] && return 0
    # The demo's JSON is read with Python's json module.
    command -v python3 >/dev/null || ensure_packages python3
    step "making the demo account, its stream and an edge cluster"
    local password session token stream cluster
    password="$(local_secret demo-password random_base64 18)"
    local credentials signup
    credentials="$(python3 -c 'import json, sys; print(json.dumps({"email": sys.argv[1], "password": sys.argv[2]}))' "$DEMO_EMAIL" "$password")"
    signup="$(python3 -c 'import json, sys; d = json.loads(sys.argv[1]); d["tenantName"] = "Demo"; print(json.dumps(d))' "$credentials")"
    session="$(bridge_post /auth/register "$signup")"
    if ! token="$(json_get token <<<"$session" 2>/dev/null)"; then
        session="$(bridge_post /auth/login "$credentials")"
        token="$(json_get token <<<"$session" 2>/dev/null)" || die "could not sign in as $DEMO_EMAIL: $session"
    fi
    stream="$(graphql 'mutation { createStream(input: {name: "demo", description: "The demo stream, pushed by the test encoder"}) { __typename ... on Stream { streamKey playbackId } ... on Error { message } } }' "$token")"
    cluster="$(graphql 'mutation { createEdgeCluster(input: {clusterName: "Simulated edges"}) { __typename ... on CreateEdgeClusterResponse { bootstrapToken { token } } ... on Error { message } } }' "$token")"
    (
        umask 077
        {
            printf 'DEMO_STREAM_KEY=%q\n' "$(json_get data.createStream.streamKey <<<"$stream")"
            printf 'DEMO_PLAYBACK_ID=%q\n' "$(json_get data.createStream.playbackId <<<"$stream")"
            printf 'DEMO_ENROLMENT_TOKEN=%q\n' "$(json_get data.createEdgeCluster.bootstrapToken.token <<<"$cluster")"
        } >"$DEMO_ENV.tmp" && mv "$DEMO_ENV.tmp" "$DEMO_ENV"
    ) || die "the demo answers were not what compose/edge.sh expects: $stream $cluster"
}

mist_simulator_healthy() {
    curl -fsS --max-time 2 -H 'content-type: application/json' --data '{"version":true}' "http://$FRAMEWORKS_MIST_SIM_LISTEN/api2" >/dev/null 2>&1
}

# start_mist_simulator: the simulated MistServer, broadcasting the demo stream.
start_mist_simulator() {
    local pid port="${FRAMEWORKS_MIST_SIM_LISTEN##*:}"
    if pid="$(pid_of mist-simulator)" && [[ ! "$MIST_SIMULATOR_BIN" -nt "$RUN_DIR/mist-simulator.pid" ]]; then
        say "mist-simulator: already running (pid $pid)"
    else
        pid_of mist-simulator >/dev/null && stop_component mist-simulator TERM
        require_free_port mist-simulator FRAMEWORKS_MIST_SIM_LISTEN "$port"
        step "mist-simulator: starting"
        FRAMEWORKS_MIST_SIM_LISTEN="$FRAMEWORKS_MIST_SIM_LISTEN" \
            FRAMEWORKS_MIST_SIM_STREAM_KEY="$DEMO_STREAM_KEY" \
            FRAMEWORKS_MIST_SIM_PLAYBACK_ID="$DEMO_PLAYBACK_ID" \
            setsid "$MIST_SIMULATOR_BIN" </dev/null >>"$LOG_DIR/mist-simulator.log" 2>&1 &
        pid=$!
        record_pid mist-simulator "$pid" "$MIST_SIMULATOR_BIN" "$port"
        wait_healthy mist-simulator "$pid" mist_simulator_healthy "$LOG_DIR/mist-simulator.log"
    fi
    export FRAMEWORKS_MIST_ADDRESS="$FRAMEWORKS_MIST_SIM_LISTEN"
    export FRAMEWORKS_EDGE_PUBLIC_HOST="${FRAMEWORKS_EDGE_PUBLIC_HOST:-127.0.0.1:8080}"
}

mist_healthy() {
    curl -fsS --max-time 2 -H 'content-type: application/json' --data '{"version":true}' \
        "http://127.0.0.1:$FRAMEWORKS_MIST_API_PORT/api2" >/dev/null 2>&1
}

# start_mist: a real MistController, from a config written before its first
# start (camera discovery off, protocols on 127.0.0.1; its own saves kept).
start_mist() {
    local pid bin_dir
    bin_dir="$("$COMPOSE_DIR/mist" bin)" || die "MistServer could not be built (compose/mist build)"
    FRAMEWORKS_MIST_PASSWORD="$(local_secret mist-password random_base64 18)"
    export FRAMEWORKS_MIST_PASSWORD FRAMEWORKS_MIST_USERNAME=frameworks
    export FRAMEWORKS_MIST_ADDRESS="127.0.0.1:$FRAMEWORKS_MIST_API_PORT"
    export FRAMEWORKS_EDGE_PUBLIC_HOST="${FRAMEWORKS_EDGE_PUBLIC_HOST:-127.0.0.1:$FRAMEWORKS_MIST_HTTP_PORT}"
    if pid="$(pid_of mist)" && mist_healthy; then
        say "mist: already running (pid $pid)"
        return 0
    fi
    pid_of mist >/dev/null && stop_mist
    local port
    for port in FRAMEWORKS_MIST_API_PORT FRAMEWORKS_MIST_HTTP_PORT FRAMEWORKS_MIST_RTMP_PORT FRAMEWORKS_MIST_SRT_PORT; do
        require_free_port mist "$port" "${!port}"
    done
    # Mist's config and log hold push URLs with stream keys: owner-only.
    mkdir -p "$MIST_DATA_DIR" && chmod 700 "$MIST_DATA_DIR"
    "$FRAMEWORKS_BIN" mist-config --config "$MIST_DATA_DIR/config.json" \
        --api-port "$FRAMEWORKS_MIST_API_PORT" --http-port "$FRAMEWORKS_MIST_HTTP_PORT" \
        --rtmp-port "$FRAMEWORKS_MIST_RTMP_PORT" --srt-port "$FRAMEWORKS_MIST_SRT_PORT" ||
        die "could not write MistServer's config"
    (umask 077 && touch "$LOG_DIR/mist.log")
    chmod 600 "$LOG_DIR/mist.log"
    step "mist: starting MistServer ($bin_dir)"
    # Mist's processes share state through /dev/shm under fixed names and
    # find the controller's UDP API there: this Mist gets a /dev/shm of its
    # own (a private mount namespace, gone with it, so a killed Mist leaves
    # nothing stale) and its own UDP API port, so it never meets another
    # Mist on this machine (the tests run their own).
    # shellcheck disable=SC2016 # $0 and $@ are the inner shell's.
    UDP_API="udp://127.0.0.1:$FRAMEWORKS_MIST_UDP_API_PORT" setsid unshare --mount --propagation private -- \
        sh -c 'mount -t tmpfs -o size=2g,mode=1777 frameworks-mist-shm /dev/shm && exec "$0" "$@"' \
        "$bin_dir/MistController" -c "$MIST_DATA_DIR/config.json" -i 127.0.0.1 -p "$FRAMEWORKS_MIST_API_PORT" \
        </dev/null >>"$LOG_DIR/mist.log" 2>&1 &
    pid=$!
    record_pid mist "$pid" "MistController -c $MIST_DATA_DIR/config.json" "$FRAMEWORKS_MIST_API_PORT"
    wait_healthy mist "$pid" mist_healthy "$LOG_DIR/mist.log"
}

# stop_mist: MistController and every process it started (its process group).
stop_mist() {
    local pid
    pid="$(pid_of mist)" || true
    stop_component mist TERM
    if [[ -n "$pid" ]]; then kill -KILL -- "-$pid" 2>/dev/null || true; fi
}

# start_encoder: an ffmpeg test pattern pushing the demo stream over RTMP,
# two minutes at a time.
start_encoder() {
    local pid
    if pid="$(pid_of encoder)"; then
        say "encoder: already running (pid $pid)"
        return 0
    fi
    command -v ffmpeg >/dev/null || ensure_packages ffmpeg
    step "encoder: pushing a test pattern to the demo stream (rtmp://127.0.0.1:$FRAMEWORKS_MIST_RTMP_PORT/live/...)"
    # ffmpeg may print the push URL, stream key and all: owner-only.
    (umask 077 && touch "$LOG_DIR/encoder.log")
    chmod 600 "$LOG_DIR/encoder.log"
    setsid "$COMPOSE_DIR/encoder" "rtmp://127.0.0.1:$FRAMEWORKS_MIST_RTMP_PORT/live/$DEMO_STREAM_KEY" \
        </dev/null >>"$LOG_DIR/encoder.log" 2>&1 &
    record_pid encoder $! "$COMPOSE_DIR/encoder" 0
}

# start_edge: the chosen MistServer and its source, then `frameworks edge`.
start_edge() {
    # shellcheck source=/dev/null
    source "$DEMO_ENV"
    [[ "$FRAMEWORKS_EDGE_MIST" == real || "$FRAMEWORKS_EDGE_MIST" == simulated ]] ||
        die "FRAMEWORKS_EDGE_MIST='$FRAMEWORKS_EDGE_MIST' is neither 'real' nor 'simulated'"
    mkdir -p "$EDGE_DATA_DIR"
    # Switching between the real and the simulated Mist: the other one
    # stops, and the edge daemon restarts in front of the chosen one.
    local mode_file="$EDGE_DATA_DIR/mist-mode"
    if [[ -f "$mode_file" && "$(cat "$mode_file")" != "$FRAMEWORKS_EDGE_MIST" ]]; then
        say "edge: switching to the $FRAMEWORKS_EDGE_MIST MistServer"
        stop_edge
    fi
    if [[ "$FRAMEWORKS_EDGE_MIST" == real ]]; then start_mist; else start_mist_simulator; fi
    printf '%s\n' "$FRAMEWORKS_EDGE_MIST" >"$mode_file"
    export FRAMEWORKS_EDGE_LISTEN FRAMEWORKS_EDGE_METRICS_LISTEN
    export FRAMEWORKS_EDGE_BALANCER="http://$FRAMEWORKS_BALANCER_GRPC_LISTEN"
    export FRAMEWORKS_EDGE_JOURNAL="$EDGE_DATA_DIR/journal.redb"
    export FRAMEWORKS_EDGE_NODE_ID_FILE="$EDGE_DATA_DIR/node-id"
    export FRAMEWORKS_EDGE_RECORDINGS_DIR="$EDGE_DATA_DIR/recordings"
    export FRAMEWORKS_EDGE_ENROLMENT_TOKEN="$DEMO_ENROLMENT_TOKEN"
    # Amsterdam, so /play has a distance to show.
    export FRAMEWORKS_EDGE_LATITUDE="${FRAMEWORKS_EDGE_LATITUDE:-52.37}"
    export FRAMEWORKS_EDGE_LONGITUDE="${FRAMEWORKS_EDGE_LONGITUDE:-4.90}"
    start_role edge
    [[ "$FRAMEWORKS_EDGE_MIST" == real ]] && start_encoder
    return 0
}

stop_edge() {
    # The encoder takes its ffmpeg with it.
    stop_component encoder TERM
    stop_component edge TERM
    stop_component mist-simulator TERM
    stop_mist
}

# edge_endpoints: the edge's lines of compose/up's summary.
edge_endpoints() {
    if [[ "$FRAMEWORKS_EDGE_MIST" == real ]]; then
        cat <<LINES
  mist        MistServer $(cat "$(dirname "$("$COMPOSE_DIR/mist" bin)")/.built") on 127.0.0.1: API $FRAMEWORKS_MIST_API_PORT, HTTP $FRAMEWORKS_MIST_HTTP_PORT, RTMP $FRAMEWORKS_MIST_RTMP_PORT, SRT $FRAMEWORKS_MIST_SRT_PORT (log $LOG_DIR/mist.log)
  edge        frameworks edge in front of it (triggers http://$FRAMEWORKS_EDGE_LISTEN, metrics http://$FRAMEWORKS_EDGE_METRICS_LISTEN/metrics)
LINES
    else
        cat <<LINES
  edge        a simulated MistServer ($FRAMEWORKS_MIST_SIM_LISTEN) broadcasting the demo stream, fronted by
              frameworks edge (triggers http://$FRAMEWORKS_EDGE_LISTEN, metrics http://$FRAMEWORKS_EDGE_METRICS_LISTEN/metrics)
LINES
    fi
}

# demo_summary: what the demo stream does, and where to watch it.
demo_summary() {
    if [[ "$FRAMEWORKS_EDGE_MIST" == real ]]; then
        cat <<LINES
An ffmpeg test pattern pushes the demo stream over RTMP for two minutes at a time:
  play it (HLS)      http://$FRAMEWORKS_BALANCER_HTTP_LISTEN/play/$DEMO_PLAYBACK_ID/hls/index.m3u8  (ffplay, VLC, Safari, hls.js)
  LL-HLS, DASH, MP4  .../play/$DEMO_PLAYBACK_ID/llhls/index.m3u8, .../dash/index.mpd, .../mp4
  push your own      rtmp://127.0.0.1:$FRAMEWORKS_MIST_RTMP_PORT/live/<stream key>, srt://127.0.0.1:$FRAMEWORKS_MIST_SRT_PORT?streamid=<stream key>
LINES
    else
        printf 'The demo stream goes live for two minutes at a time, with three simulated viewers:\n'
    fi
}
