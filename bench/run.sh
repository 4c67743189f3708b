#!/usr/bin/env bash
# Benchmarks agentgate against the mock agent itself ("direct") and nginx as a pure SSE relay.
#
#   bench/run.sh            full run (rounds, scenarios and sizes below; ~25 min on 2 cores)
#   bench/run.sh --smoke    tiny configuration, one round, seconds; exits non-zero on any error
#
# Options: --rounds N, --only "ttfe latency firehose cross hold tail inproc files" (scenarios),
# --systems "direct nginx sqlite postgres", --out DIR, --no-build,
# --debug (debug binaries: CI checks the tools work without a release build; figures meaningless),
# --strict (a missing baseline, PostgreSQL or valgrind fails the run instead of being skipped),
# --update-baseline (with "inproc": measure the guarded callgrind figure five times and write
# the median to bench/callgrind-baseline.json instead of checking against it; see "callgrind").
# Environment: BENCH_PG_ADMIN (default postgres://agentgate:agentgate@127.0.0.1:5432/postgres;
# with pg_checkpoint granted to its role, every PostgreSQL scenario starts after a CHECKPOINT),
# BENCH_PORT_BASE (default 19100: the mock's port; nginx +100, gateways +200 and +201, S3 +300),
# BENCH_CALLGRIND_BASELINE (default bench/callgrind-baseline.json: the guard's committed figure),
# BENCH_PG_URL_QUERY (added to the gateways' PostgreSQL URL, for what-if runs, e.g.
# "options=-c%20synchronous_commit%3Doff": commits that do not wait for the WAL's fsync),
# BENCH_GATEWAY_BIN (an agentgate binary to measure instead of the built one: an earlier
# commit's, for a before/after in one sitting), BENCH_KEEP_DATA=1 (keep each SQLite gateway's
# database files after its round; by default they are deleted when the gateway stops).
# "cross" (PostgreSQL only) runs two gateways on one database, with moto_server as their shared
# S3 storage: the latency scenario's load posted on gateway A, every run followed on gateway B.
# "tail" (agentgate only: direct and nginx have no runs to follow) starts TAIL_RUNS live runs and
# ramps idle subscribers over them (GET /runs/{id}/events): a subscriber costs the gateway one
# descriptor where a relayed stream costs two, so 10,000 fit under a 20,000 open-files limit.
#
# The load client and the mock agent are pinned to core 0, the system under test (nginx or
# agentgate) to core 1, every tokio runtime with TOKIO_WORKER_THREADS=1. Systems are interleaved
# within each round; the summary gives the median of the round medians and the spread (min..max
# of the round values). Raw results: $OUT/results.jsonl; summary: $OUT/summary.md.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=release
SMOKE=0
STRICT=0
UPDATE_BASELINE=0
ROUNDS=5
ONLY="ttfe latency firehose cross hold tail inproc files"
SYSTEMS="direct nginx sqlite postgres"
BUILD=1
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1 ;;
        --rounds) ROUNDS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --systems) SYSTEMS=$2; shift ;;
        --out) OUT=$2; shift ;;
        --no-build) BUILD=0 ;;
        --debug) PROFILE=debug ;;
        --strict) STRICT=1 ;;
        --update-baseline) UPDATE_BASELINE=1 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
BIN=$TARGET_DIR/$PROFILE
GATEWAY_BIN=${BENCH_GATEWAY_BIN:-$BIN/agentgate}
[ -n "$OUT" ] || OUT=$ROOT/target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)$([ $SMOKE = 1 ] && echo -smoke || true)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
PG_ADMIN=${BENCH_PG_ADMIN:-postgres://agentgate:agentgate@127.0.0.1:5432/postgres}

# Sizes. The full run scales the firehose and the idle ramp to what 2 cores and a 20,000
# open-file hard limit allow (see BENCHMARKS.md).
if [ $SMOKE = 1 ]; then
    ROUNDS=1
    TTFE_STREAMS=20; TTFE_WARMUP=5
    LAT_STREAMS=10; LAT_CONC=10; LAT_EVENTS=10
    FIRE_STREAMS=2; FIRE_EVENTS=500
    HOLD_RAMP=50,100; HOLD_HB_MS=1000; HOLD_WINDOW=2.5; HOLD_RATE=500
    TAIL_RUNS=5; TAIL_RAMP=250,500
    INPROC_EVENTS=200; FILES_ARGS="--files 50 --lines 20 --reps 1"
else
    TTFE_STREAMS=${TTFE_STREAMS:-300}; TTFE_WARMUP=30
    LAT_STREAMS=${LAT_STREAMS:-100}; LAT_CONC=50; LAT_EVENTS=200
    FIRE_STREAMS=20; FIRE_EVENTS=${FIRE_EVENTS:-5000}
    HOLD_RAMP=${HOLD_RAMP:-1000,2000,4000,6000,8000,9800}; HOLD_HB_MS=5000; HOLD_WINDOW=11; HOLD_RATE=1000
    TAIL_RUNS=${TAIL_RUNS:-100}; TAIL_RAMP=${TAIL_RAMP:-1000,2000,4000,6000,8000,10000}
    INPROC_EVENTS=10000; FILES_ARGS="--files 1000 --lines 250 --reps 5"
fi
PORT_BASE=${BENCH_PORT_BASE:-19100}
MOCK_PORT=$PORT_BASE; NGINX_PORT=$((PORT_BASE + 100)); GW_PORT=$((PORT_BASE + 200))
GW2_PORT=$((PORT_BASE + 201)); S3_PORT=$((PORT_BASE + 300))

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
# missing WHAT: skips it, or fails the run under --strict.
missing() {
    if [ $STRICT = 1 ]; then log "$1 unavailable (--strict): failing"; exit 1; fi
    log "$1 unavailable: skipped"
}
want() { case " $ONLY " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
has_system() { case " $SYSTEMS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if [ $BUILD = 1 ]; then
    log "building ($PROFILE)"
    if [ $PROFILE = release ]; then release=(--release); else release=(); fi
    (cd "$ROOT" && cargo build "${release[@]}" -q -p agentgate -p agentgate-bench)
fi
ulimit -n "$(ulimit -Hn)" || true
log "open files limit: $(ulimit -n); results in $OUT"

PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

wait_http() { # url, seconds[, pid that must be the one answering]
    local i
    for i in $(seq 1 $(( $2 * 10 ))); do
        if [ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null; then
            echo "the server for $1 exited (port in use? set BENCH_PORT_BASE)" >&2
            return 1
        fi
        curl -s -o /dev/null -m 1 "$1" && return 0
        sleep 0.1
    done
    echo "timed out waiting for $1" >&2
    return 1
}

# Another bench on this machine would otherwise serve this run's clients on its servers.
port_free() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        log "port $1 is in use (another bench? set BENCH_PORT_BASE)"
        exit 1
    fi
}
alive() { kill -0 "$1" 2>/dev/null || { log "$2 exited (port in use? set BENCH_PORT_BASE)"; exit 1; }; }

# --- the systems -----------------------------------------------------------------------------
start_mock() {
    port_free $MOCK_PORT
    taskset -c 0 env TOKIO_WORKER_THREADS=1 "$BIN/mock-upstream" --bind 127.0.0.1:$MOCK_PORT \
        2> "$OUT/mock.log" &
    MOCK_PID=$!
    PIDS+=("$MOCK_PID")
    sleep 0.3
    alive "$MOCK_PID" mock-upstream
}

NGINX_OK=0
start_nginx() {
    if ! command -v nginx >/dev/null 2>&1 && [ -x /usr/sbin/nginx ]; then PATH=$PATH:/usr/sbin; fi
    if ! command -v nginx >/dev/null 2>&1; then
        log "nginx missing: installing Debian's nginx"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light) \
            > "$OUT/nginx-install.log" 2>&1 || true
        PATH=$PATH:/usr/sbin
    fi
    if ! command -v nginx >/dev/null 2>&1; then
        missing "nginx (the nginx baseline)"
        return 0
    fi
    port_free $NGINX_PORT
    mkdir -p "$OUT/nginx/logs"
    cat > "$OUT/nginx/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 20000;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/logs/error.log warn;
events { worker_connections 19900; multi_accept on; }
http {
    access_log off;
    client_body_temp_path $OUT/nginx/body;
    proxy_temp_path $OUT/nginx/proxy;
    upstream agent {
        server 127.0.0.1:$MOCK_PORT;
        keepalive 256;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / {
            proxy_pass http://agent;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }
    }
}
EOF
    taskset -c 1 nginx -p "$OUT/nginx" -c "$OUT/nginx/nginx.conf" -g 'daemon off;' \
        2> "$OUT/nginx/logs/stderr.log" &
    NGINX_PID=$!
    PIDS+=("$NGINX_PID")
    sleep 0.5
    alive "$NGINX_PID" nginx
    NGINX_PIDS=$(pgrep -P "$NGINX_PID" | tr '\n' ' ')
    NGINX_OK=1
}

PG_OK=0
if has_system postgres && command -v psql >/dev/null 2>&1 && psql "$PG_ADMIN" -qAtc 'select 1' >/dev/null 2>&1; then
    PG_OK=1
fi

# gateway_config DIR PORT DATABASE_URL KEEP_ALIVE_SECS [INSTANCE_ID [EXTRA_SECTIONS]]
gateway_config() {
    cat > "$1/config.toml" <<EOF
[server]
bind = "127.0.0.1:$2"
data_dir = "$1"
demo_agent = false
[database]
url = "$3"
[agent]
url = "http://127.0.0.1:$MOCK_PORT"
[limits]
daily_messages = 100000000
[deploy]
on_new_version = false
[runs]
keep_alive_secs = $4
instance_id = "${5:-}"
[log]
level = "warn"
${6:-}
EOF
}

# launch_gateway DIR PORT: agentgate on core 1 with DIR/config.toml; sets LAUNCHED_PID.
launch_gateway() {
    port_free "$2"
    taskset -c 1 env TOKIO_WORKER_THREADS=1 "$GATEWAY_BIN" serve --config "$1/config.toml" \
        > "$1/server.log" 2>&1 &
    LAUNCHED_PID=$!
    PIDS+=("$LAUNCHED_PID")
}

new_pg_database() { # sets GW_PG_DB
    GW_PG_DB=agentgate_bench_$(date +%s)_$RANDOM
    psql "$PG_ADMIN" -qc "CREATE DATABASE $GW_PG_DB" >/dev/null
}

# start_gateway KIND ROUND [keep_alive_secs]: sets GW_PID, GW_URL, GW_TOKEN_FILE
start_gateway() {
    local kind=$1 round=$2 keep_alive=${3:-15}
    local dir=$OUT/gw-$kind-$round-$RANDOM
    local db_url=""
    mkdir -p "$dir"
    if [ "$kind" = postgres ]; then
        new_pg_database
        db_url=${PG_ADMIN%/*}/$GW_PG_DB${BENCH_PG_URL_QUERY:+?$BENCH_PG_URL_QUERY}
    fi
    gateway_config "$dir" $GW_PORT "$db_url" "$keep_alive"
    "$GATEWAY_BIN" token --user bench --config "$dir/config.toml" > "$dir/token"
    launch_gateway "$dir" $GW_PORT
    GW_PID=$LAUNCHED_PID
    GW_URL=http://127.0.0.1:$GW_PORT
    GW_TOKEN_FILE=$dir/token
    GW_DIR=$dir
    wait_http "$GW_URL/health" 30 "$GW_PID"
}

# S3 for the cross scenario: a second gateway refuses to start beside one that keeps files on
# its own disk (cluster::members), so both gateways use one bucket on moto_server.
S3_OK=0
start_s3() {
    if ! command -v moto_server >/dev/null 2>&1; then
        missing "moto_server (S3 for the cross-gateway scenario)"
        return 0
    fi
    port_free $S3_PORT
    moto_server -H 127.0.0.1 -p $S3_PORT > "$OUT/moto.log" 2>&1 &
    S3_PID=$!
    PIDS+=("$S3_PID")
    wait_http "http://127.0.0.1:$S3_PORT/moto-api/" 30 "$S3_PID"
    S3_OK=1
}

# start_pair ROUND: gateways A and B on one fresh PostgreSQL database and a fresh bucket, with
# one signing secret, both on core 1. Sets GW_PID, GW_URL, GW_TOKEN_FILE (A), GW2_PID, GW2_URL (B).
start_pair() {
    local round=$1 bucket=agentgate-bench-$1-$RANDOM name dir port
    curl -sf -X PUT "http://127.0.0.1:$S3_PORT/$bucket" > /dev/null
    new_pg_database
    local shared="[auth]
hs256_secret = \"agentgate-bench-cross-gateway-secret\"
[git]
host = \"none\"
[storage]
kind = \"s3\"
bucket = \"$bucket\"
region = \"us-east-1\"
endpoint = \"http://127.0.0.1:$S3_PORT\"
path_style = true
access_key_id = \"bench\"
secret_access_key = \"bench-secret\""
    for name in a b; do
        dir=$OUT/gw-cross-$round-$name
        port=$([ $name = a ] && echo $GW_PORT || echo $GW2_PORT)
        mkdir -p "$dir"
        gateway_config "$dir" "$port" "${PG_ADMIN%/*}/$GW_PG_DB" 15 "bench-$name" "$shared"
        # B starts once A has registered, so B's start checks that they can share the database.
        launch_gateway "$dir" "$port"
        wait_http "http://127.0.0.1:$port/health" 30 "$LAUNCHED_PID" \
            || { tail -n 5 "$dir/server.log" >&2; return 1; }
        if [ $name = a ]; then
            "$GATEWAY_BIN" token --user bench --config "$dir/config.toml" > "$dir/token"
            GW_PID=$LAUNCHED_PID; GW_URL=http://127.0.0.1:$port; GW_TOKEN_FILE=$dir/token
        else
            GW2_PID=$LAUNCHED_PID; GW2_URL=http://127.0.0.1:$port
        fi
    done
}

stop_gateway() {
    for pid in ${GW2_PID:-} "$GW_PID"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    GW2_PID=""
    # A SQLite firehose round leaves about a gigabyte of log; a few runs filled the disk. The
    # gateway's log, metrics and config stay.
    if [ -n "${GW_DIR:-}" ] && [ "${BENCH_KEEP_DATA:-0}" != 1 ]; then
        rm -f "$GW_DIR"/agentgate.db "$GW_DIR"/agentgate.db-wal "$GW_DIR"/agentgate.db-shm
    fi
    GW_DIR=""
    if [ -n "${GW_PG_DB:-}" ]; then
        local refusal
        if ! refusal=$(psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $GW_PG_DB WITH (FORCE)" 2>&1); then
            log "could not drop the gateway's database $GW_PG_DB: $refusal"
        fi
        GW_PG_DB=""
    fi
}

# A checkpoint before each PostgreSQL scenario, so that the WAL of the scenarios before it is
# not written out inside its measurement: a firehose round writes about a gigabyte, and the
# checkpoint it starts ran into the next rounds (BENCHMARKS.md, round 2, sixth part). Needs a
# role with pg_checkpoint (or a superuser); without one the run goes on and says so once.
CHECKPOINT_WARNED=0
pg_checkpoint() {
    psql "$PG_ADMIN" -qc CHECKPOINT >/dev/null 2>&1 && return 0
    if [ $CHECKPOINT_WARNED = 0 ]; then
        log "no CHECKPOINT before PostgreSQL scenarios (the role needs pg_checkpoint)"
        CHECKPOINT_WARNED=1
    fi
}

# client SYSTEM SCENARIO ROUND ARGS...: runs load-client on core 0 and records its JSON line.
client() {
    local system=$1 scenario=$2 round=$3
    shift 3
    local target sut aux=()
    case $system in
        direct) target=(--direct "http://127.0.0.1:$MOCK_PORT"); sut=(--sut-pid "$MOCK_PID") ;;
        nginx) target=(--direct "http://127.0.0.1:$NGINX_PORT"); sut=()
               for p in $NGINX_PID $NGINX_PIDS; do sut+=(--sut-pid "$p"); done ;;
        *) target=(--gateway "$GW_URL" --token-file "$GW_TOKEN_FILE"); sut=(--sut-pid "$GW_PID")
           if [ -n "${GW2_PID:-}" ]; then sut+=(--sut-pid "$GW2_PID"); fi
           if [ "$system" = postgres ]; then
               for p in $(pgrep -x postgres || true); do aux+=(--aux-pid "$p"); done
               pg_checkpoint
           fi ;;
    esac
    local line
    line=$(taskset -c 0 env TOKIO_WORKER_THREADS=1 "$BIN/load-client" "${target[@]}" "${sut[@]}" \
        "${aux[@]}" --label "$system/$scenario/r$round" "$@" 2>> "$OUT/client.log" | tail -n 1)
    echo "$line" | jq -c --arg s "$system" --arg c "$scenario" --argjson r "$round" \
        '. + {system: $s, scenario: $c, round: $r}' >> "$RESULTS"
    # The gateway's own view (relay latency, the SQLite writer's lock waits), cumulative over
    # the scenarios it has run so far.
    if [ -n "${GW_URL:-}" ] && [ "$system" != direct ] && [ "$system" != nginx ]; then
        mkdir -p "$OUT/metrics"
        curl -s "$GW_URL/metrics" > "$OUT/metrics/$system-r$round-after-$scenario.txt" || true
    fi
    echo "$line" | jq -r '"  \(.label): " + (if .mode == "hold" then "held \(.held)" + (if .tail_runs then " subscribers of \(.tail_runs) runs (run failures \(.run_failures))" else "" end) + ", rss/stream \(.rss_per_stream_bytes) B, failures \(.failures)" else "errors \(.errors) stalled \(.stalled) events \(.events) ttfe p50 \(.ttfe.p50_us)µs p99 \(.ttfe.p99_us)µs latency p50 \(.latency.p50_us)µs p99 \(.latency.p99_us)µs" + (if .follow then " follow p50 \(.follow.latency.p50_us)µs p99 \(.follow.latency.p99_us)µs" else "" end) + " cpu \(.sut_cpu_us_per_event)µs/ev" end)' >&2
}

scenarios() { # system round
    local system=$1 round=$2
    if want ttfe; then
        client "$system" ttfe "$round" --streams $TTFE_STREAMS --warmup $TTFE_WARMUP \
            --concurrency 1 --events 5 --pad 256
    fi
    if want latency; then
        client "$system" latency "$round" --streams $LAT_STREAMS --concurrency $LAT_CONC \
            --events $LAT_EVENTS --interval-us 20000 --pad 512
    fi
    if want firehose; then
        client "$system" firehose "$round" --streams $FIRE_STREAMS --concurrency $FIRE_STREAMS \
            --events $FIRE_EVENTS --pad 256 --stall-secs 60
    fi
}

# --- machine --------------------------------------------------------------------------------
{
    echo "nproc: $(nproc)"
    lscpu | grep -E '^(Model name|CPU\(s\)|Hypervisor vendor)'
    echo "kernel: $(uname -r)"
    echo "rustc: $(rustc --version 2>/dev/null || true)"
    echo "nginx: $(nginx -v 2>&1 || true)"
    echo "postgres: $(psql "$PG_ADMIN" -qAtc 'show server_version' 2>/dev/null || echo unavailable)"
    echo "open files: $(ulimit -n)"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

start_mock
if want cross && has_system postgres && [ $PG_OK = 1 ]; then start_s3; fi
if has_system nginx && { want ttfe || want latency || want firehose || want hold; }; then start_nginx; fi

# --- rounds: every system in every round, interleaved --------------------------------------
if want ttfe || want latency || want firehose; then
    for round in $(seq 1 "$ROUNDS"); do
        log "round $round/$ROUNDS"
        for system in $SYSTEMS; do
            case $system in
                direct) scenarios direct "$round" ;;
                nginx) [ $NGINX_OK = 1 ] && scenarios nginx "$round" ;;
                sqlite) start_gateway sqlite "$round"; scenarios sqlite "$round"; stop_gateway ;;
                postgres) if [ $PG_OK = 1 ]; then
                              start_gateway postgres "$round"; scenarios postgres "$round"; stop_gateway
                          else missing "PostgreSQL at $PG_ADMIN"; fi ;;
            esac
        done
    done
fi

# --- cross-gateway delivery: the latency load posted on A, every run followed on B ----------
if want cross; then
    if ! has_system postgres; then
        log "cross: runs on PostgreSQL only, and postgres is not among the systems: skipped"
    elif [ $PG_OK = 0 ]; then
        missing "PostgreSQL at $PG_ADMIN"
    elif [ $S3_OK = 1 ]; then
        for round in $(seq 1 "$ROUNDS"); do
            log "cross round $round/$ROUNDS"
            start_pair "$round"
            client postgres cross "$round" --follow-via "$GW2_URL" --streams $LAT_STREAMS \
                --concurrency $LAT_CONC --events $LAT_EVENTS --interval-us 20000 --pad 512
            stop_gateway
        done
    fi
fi

# --- idle streams: one ramp per system (each holds thousands of connections for a minute) ----
IDLE_ARGS=(--heartbeat-ms "$HOLD_HB_MS" --window-secs "$HOLD_WINDOW" --open-rate "$HOLD_RATE"
           --sources 8 --stall-secs 60)
if want hold; then
    log "idle stream ramp $HOLD_RAMP, heartbeat ${HOLD_HB_MS} ms"
    HOLD_ARGS=(--ramp "$HOLD_RAMP" "${IDLE_ARGS[@]}")
    for system in $SYSTEMS; do
        case $system in
            direct) client direct hold 1 "${HOLD_ARGS[@]}"
                    # The mock's own streams end when their clients leave; give it a moment.
                    sleep 2 ;;
            nginx) [ $NGINX_OK = 1 ] && client nginx hold 1 "${HOLD_ARGS[@]}" && sleep 2 ;;
            sqlite|postgres)
                if [ "$system" = postgres ] && [ $PG_OK = 0 ]; then continue; fi
                start_gateway "$system" hold $(( HOLD_HB_MS / 1000 ))
                client "$system" hold 1 "${HOLD_ARGS[@]}"
                stop_gateway
                sleep 2 ;;
        esac
    done
fi

# --- many subscribers, few runs: TAIL_RUNS live runs, idle subscribers ramped over them ------
if want tail; then
    log "tail: $TAIL_RUNS live runs, subscriber ramp $TAIL_RAMP, heartbeat ${HOLD_HB_MS} ms (agentgate only)"
    for system in $SYSTEMS; do
        case $system in
            direct|nginx) log "tail: $system has no runs to subscribe to: not applicable" ;;
            sqlite|postgres)
                if [ "$system" = postgres ] && [ $PG_OK = 0 ]; then
                    missing "PostgreSQL at $PG_ADMIN"
                    continue
                fi
                start_gateway "$system" tail $(( HOLD_HB_MS / 1000 ))
                client "$system" tail 1 --tail-runs "$TAIL_RUNS" --ramp "$TAIL_RAMP" "${IDLE_ARGS[@]}"
                stop_gateway
                sleep 2 ;;
        esac
    done
fi

# --- deterministic: instructions per relayed event under callgrind --------------------------
# Only the relay is counted: relay-inproc calls agentgate_bench_window_start/_end around it
# (callgrind zeroes its counters at the first and writes them to <out>.1 at the second).
#
# The regression guard: bench/callgrind-baseline.json commits the marginal Ir per event of
# `relay-inproc --runs 1 --events GUARD_EVENTS --interval-us GUARD_INTERVAL_US` and the build
# profile it was measured on. Paced events are relayed one at a time, so the count does not
# depend on how many events a read, a log batch or a write happened to gather (a firehose varies
# by ±3 % from run to run under callgrind, paced events by under 1 %). A run on that profile
# (the CI smoke: debug build) fails when it measures more than max_increase_pct above the
# committed figure; on another profile the figure is reported, not compared (under --strict a
# mismatch fails). A deliberate change updates the figure in the same commit:
#   CARGO_INCREMENTAL=0 bench/run.sh --smoke --debug --only inproc --update-baseline
# (CARGO_INCREMENTAL=0 because CI builds that way.)
BASELINE=${BENCH_CALLGRIND_BASELINE:-$ROOT/bench/callgrind-baseline.json}
GUARD_EVENTS=200; GUARD_INTERVAL_US=100000
GUARD_FAILED=0
guard_fail() {
    log "callgrind guard: $1"
    GUARD_FAILED=1
}
callgrind_guard() {
    local measured committed profile max pct ok config
    measured=$(jq -r 'select(.scenario == "callgrind-paced") | .per_event_marginal' "$RESULTS" | tail -n 1)
    if [ -z "$measured" ] || [ "$measured" -le 0 ]; then
        guard_fail "no positive instructions per event measured (${measured:-none})"; return
    fi
    if ! committed=$(jq -er '.ir_per_event' "$BASELINE" 2>/dev/null); then
        guard_fail "$BASELINE is missing or has no ir_per_event"; return
    fi
    profile=$(jq -r '.profile' "$BASELINE")
    max=$(jq -r '.max_increase_pct' "$BASELINE")
    config=$(jq -r '"\(.runs) \(.events) \(.interval_us)"' "$BASELINE")
    if [ "$config" != "1 $GUARD_EVENTS $GUARD_INTERVAL_US" ]; then
        guard_fail "the committed figure is for runs, events, interval '$config', run.sh measures '1 $GUARD_EVENTS $GUARD_INTERVAL_US': update it"
        return
    fi
    if [ "$profile" != "$PROFILE" ]; then
        local why="the committed figure is for a $profile build, this run is $PROFILE"
        if [ $STRICT = 1 ]; then guard_fail "$why (--strict: they must agree)"
        else log "callgrind guard: $why: not compared"; fi
        return
    fi
    pct=$(jq -n --argjson m "$measured" --argjson c "$committed" '(($m - $c) * 1000 / $c | round) / 10')
    ok=$(jq -n --argjson p "$pct" --argjson x "$max" '$p <= $x')
    log "callgrind guard: $measured Ir/event measured, $committed committed (at $(jq -r '.measured_at.commit' "$BASELINE")): ${pct} % (fails above +$max %)"
    jq -nc --argjson m "$measured" --argjson c "$committed" --argjson p "$pct" --argjson x "$max" \
        --argjson ok "$ok" '{system: "inproc", scenario: "callgrind-guard", round: 1, measured: $m,
        committed: $c, change_pct: $p, max_increase_pct: $x, ok: $ok}' >> "$RESULTS"
    if [ "$ok" != true ]; then
        guard_fail "instructions per event rose ${pct} % above the committed figure: find the cause, or, for a deliberate change, update the figure in the same commit (see bench/run.sh)"
    elif jq -ne --argjson p "$pct" --argjson x "$max" '$p < -$x' >/dev/null; then
        log "callgrind guard: ${pct} % below the committed figure: update it with the change that did it, to keep the guard tight"
    fi
}
# update_baseline: the median of five measurements, with their spread.
update_baseline() {
    local commit
    commit=$(git -C "$ROOT" rev-parse --short HEAD)
    git -C "$ROOT" diff --quiet HEAD -- src Cargo.lock || commit="$commit+uncommitted changes"
    jq -s --arg profile "$PROFILE" --argjson events $GUARD_EVENTS --argjson interval $GUARD_INTERVAL_US \
        --arg commit "$commit" --arg date "$(date -u +%Y-%m-%d)" \
        --arg rustc "$(rustc --version 2>/dev/null || echo unknown)" \
        --arg incremental "${CARGO_INCREMENTAL:-default}" \
        '[.[] | select(.scenario | startswith("callgrind-update")) | .per_event_marginal] | sort
         | if length < 5 then error("fewer than five measurements") else . end | . as $v
         | {what: "marginal instructions per relayed event (callgrind Ir of relay-inproc between its window markers: (with events - with 0 events) / events)",
            profile: $profile, runs: 1, events: $events, interval_us: $interval,
            ir_per_event: $v[2], spread: [$v[0], $v[4]], max_increase_pct: 10,
            measured_at: {commit: $commit, date: $date, rustc: $rustc, cargo_incremental: $incremental},
            update: "CARGO_INCREMENTAL=0 bench/run.sh --smoke --debug --only inproc --update-baseline, in the commit that changes the figure"}' \
        "$RESULTS" > "$BASELINE.tmp"
    mv "$BASELINE.tmp" "$BASELINE"
    log "callgrind guard: wrote $BASELINE:"
    cat "$BASELINE" >&2
}
if want inproc; then
    if command -v valgrind >/dev/null 2>&1; then
        # callgrind_inproc RUNS SCENARIO EVENTS [INTERVAL_US]: EVENTS events split over RUNS
        # concurrent runs, minus the same runs with no running events.
        callgrind_inproc() {
            local runs=$1 scenario=$2 per_run=$(( $3 / $1 )) interval=${4:-0} n ir_n ir_0
            log "callgrind: relay-inproc --runs $runs --events $per_run --interval-us $interval, and --events 0"
            for n in "$per_run" 0; do
                if ! valgrind --tool=callgrind --callgrind-out-file="$OUT/$scenario.$n.out" \
                    --zero-before=agentgate_bench_window_start --dump-before=agentgate_bench_window_end \
                    "$BIN/relay-inproc" --runs "$runs" --events "$n" --interval-us "$interval" \
                    > "$OUT/$scenario.$n.json" 2> "$OUT/$scenario.$n.log"; then
                    log "relay-inproc --runs $runs --events $n failed under callgrind: $OUT/$scenario.$n.log"
                    exit 1
                fi
            done
            # "totals:" of the window's part (its "summary:" counts from the process's start).
            ir_n=$(grep -E '^totals:' "$OUT/$scenario.$per_run.out.1" 2>/dev/null | awk '{print $2}' || true)
            ir_0=$(grep -E '^totals:' "$OUT/$scenario.0.out.1" 2>/dev/null | awk '{print $2}' || true)
            if [ -z "$ir_n" ] || [ -z "$ir_0" ]; then
                log "callgrind wrote no count for the relay's window: $OUT/$scenario.*.out.1"
                exit 1
            fi
            jq -nc --arg s "$scenario" --argjson r "$runs" --argjson n "$(( per_run * runs ))" \
                --argjson a "$ir_n" --argjson b "$ir_0" --argjson i "$interval" \
                '{system: "inproc", scenario: $s, round: 1, runs: $r, events: ($n + $r), interval_us: $i,
                  instructions: $a, fixed_instructions: $b, per_event_total: ($a / ($n + $r) | floor),
                  per_event_marginal: (($a - $b) / $n | floor)}' >> "$RESULTS"
            tail -n 1 "$RESULTS" >&2
        }
        if [ $UPDATE_BASELINE = 1 ]; then
            for rep in 1 2 3 4 5; do
                callgrind_inproc 1 "callgrind-update$rep" $GUARD_EVENTS $GUARD_INTERVAL_US
            done
            update_baseline
        else
            callgrind_inproc 1 callgrind-paced $GUARD_EVENTS $GUARD_INTERVAL_US
            callgrind_guard
            callgrind_inproc 1 callgrind "$INPROC_EVENTS"
            callgrind_inproc 20 callgrind-20runs "$INPROC_EVENTS"
        fi
    else
        missing "valgrind (callgrind)"
        "$BIN/relay-inproc" --events "$INPROC_EVENTS" > "$OUT/inproc.json"
        jq -c '. + {system: "inproc", scenario: "plain", round: 1}' "$OUT/inproc.json" >> "$RESULTS"
    fi
fi

if want files; then
    log "files-bench $FILES_ARGS"
    # shellcheck disable=SC2086
    "$BIN/files-bench" $FILES_ARGS 2> "$OUT/files.log" \
        | jq -c '. + {system: "files", scenario: "files", round: 1}' >> "$RESULTS"
    tail -n 1 "$RESULTS" >&2
fi

cleanup
PIDS=()

# --- summary ---------------------------------------------------------------------------------
python3 "$ROOT/bench/summarize.py" "$RESULTS" | tee "$OUT/summary.md"
mkdir -p "$ROOT/target/bench-results"
ln -sfn "$OUT" "$ROOT/target/bench-results/latest"

if [ $GUARD_FAILED = 1 ]; then
    echo "callgrind guard: FAILED" >&2
    exit 1
fi

# Smoke: every stream must have completed without errors or stalls, every section must exist.
if [ $SMOKE = 1 ]; then
    bad=$(jq -s '[.[] | select((.errors // 0) > 0 or (.stalled // 0) > 0
                 or (.mode == "hold" and (.held // 0) == 0) or (.run_failures // 0) > 0)] | length' "$RESULTS")
    want_lines=$(jq -s 'length' "$RESULTS")
    if [ "$bad" != 0 ] || [ "$want_lines" = 0 ]; then
        echo "smoke: FAILED ($bad bad results of $want_lines)" >&2
        exit 1
    fi
    echo "smoke: $want_lines passed, 0 failed"
fi
