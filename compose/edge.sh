# shellcheck shell=bash
# The simulated edge compose/up runs, so that a newcomer sees streams go
# live and viewers come and go: a demo account with one stream and an edge
# cluster (made once, through the public API, and remembered in
# $FRAMEWORKS_DATA_DIR/demo.env), a simulated MistServer that broadcasts
# that stream again and again, and `frameworks edge` in front of it,
# enrolled with the cluster's token. Sourced by compose/up and compose/down.

DEMO_ENV="$FRAMEWORKS_DATA_DIR/demo.env"
DEMO_EMAIL="demo@frameworks.localhost"
EDGE_DATA_DIR="$FRAMEWORKS_DATA_DIR/edge"

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
    stream="$(graphql 'mutation { createStream(input: {name: "demo", description: "Broadcast by the simulated edge"}) { __typename ... on Stream { streamKey playbackId } ... on Error { message } } }' "$token")"
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

# start_simulated_edge: the simulated MistServer, then `frameworks edge`.
start_simulated_edge() {
    # shellcheck source=/dev/null
    source "$DEMO_ENV"
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
    mkdir -p "$EDGE_DATA_DIR"
    export FRAMEWORKS_EDGE_LISTEN FRAMEWORKS_EDGE_METRICS_LISTEN
    export FRAMEWORKS_MIST_ADDRESS="$FRAMEWORKS_MIST_SIM_LISTEN"
    export FRAMEWORKS_EDGE_BALANCER="http://$FRAMEWORKS_BALANCER_GRPC_LISTEN"
    export FRAMEWORKS_EDGE_PUBLIC_HOST="${FRAMEWORKS_EDGE_PUBLIC_HOST:-127.0.0.1:8080}"
    export FRAMEWORKS_EDGE_JOURNAL="$EDGE_DATA_DIR/journal.redb"
    export FRAMEWORKS_EDGE_NODE_ID_FILE="$EDGE_DATA_DIR/node-id"
    export FRAMEWORKS_EDGE_RECORDINGS_DIR="$EDGE_DATA_DIR/recordings"
    export FRAMEWORKS_EDGE_ENROLMENT_TOKEN="$DEMO_ENROLMENT_TOKEN"
    # Amsterdam, so /play has a distance to show.
    export FRAMEWORKS_EDGE_LATITUDE="${FRAMEWORKS_EDGE_LATITUDE:-52.37}"
    export FRAMEWORKS_EDGE_LONGITUDE="${FRAMEWORKS_EDGE_LONGITUDE:-4.90}"
    start_role edge
}

stop_simulated_edge() {
    stop_component edge TERM
    stop_component mist-simulator TERM
}
