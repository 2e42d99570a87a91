#!/usr/bin/env bash
# Smoke test of the load generator, run by .ci/run: every fawkes-bench scenario, briefly and at
# small scale, against debug builds of the app and the echo example on ephemeral loopback ports,
# and the cluster options against two app nodes over a throwaway redis-server (needs
# redis-server).
# It checks that each scenario runs end to end and reports no failure; it asserts no timing
# (figures come from bench/run.sh on a release build). Stops everything it started.
#
#   bash bench/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do timeout 10 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --locked -p fawkes -p fawkes-bench -p fawkes-runtime --bins --example echo
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
F=$BIN/fawkes
B=$BIN/fawkes-bench
ECHO=$BIN/examples/echo

# Waits up to 30 s for a line matching $2 in log file $1 and prints its host:port.
address_from() {
    for _ in $(seq 300); do
        local found
        found=$(grep -o "$2[0-9.:]*" "$1" | head -n 1 | sed "s|$2||") || true
        if [ -n "$found" ]; then echo "$found"; return; fi
        sleep 0.1
    done
    echo "no address in $1:" >&2; cat "$1" >&2; exit 1
}

cd "$WORK"
"$F" seed --users 200 --tokens-out tokens.txt --log warn
T="--tokens $WORK/tokens.txt"
# The rest scenario asks /api/v1/me in a closed loop from one address: no REST rate limit.
FAWKES_RATE_LIMIT__REQUESTS_PER_IP_PER_SECOND=0 "$F" --bind 127.0.0.1:0 --log info >app.log 2>&1 &
APP_PID=$!; PIDS+=("$APP_PID")
"$ECHO" 127.0.0.1:0 >echo.log 2>&1 &
ECHO_PID=$!; PIDS+=("$ECHO_PID")
APP="--server $(address_from app.log 'listening on http://') --server-pid $APP_PID"
E="--server $(address_from echo.log 'ws://') --server-pid $ECHO_PID"

# Runs a scenario (for at most two minutes); fails unless it exits 0 and its output matches the
# pattern (extended regular expression, GNU grep).
check() {
    local pattern=$1; shift
    local out
    echo "==> fawkes-bench $1"
    out=$(timeout 120 "$B" "$@") || { echo "$out"; echo "fawkes-bench $1 failed" >&2; exit 1; }
    echo "$out"
    grep -Eq "$pattern" <<<"$out" || { echo "fawkes-bench $1: expected /$pattern/" >&2; exit 1; }
}

check 'failures 0; closed by server 0' conns $E $T --connections 100 --topics 5 --topic-prefix echo: --hold-secs 1
check 'errors 0(;|$)' echo $E $T --connections 4 --seconds 1
check 'deliveries ([1-9][0-9]*) of \1 expected' fanout $E $T --subscribers 20 --publishers 1 --rate 20 --seconds 1
check 'errors 0(;|$)' churn $E $T --workers 2 --seconds 1
check 'result: +PASS' presence-storm $APP $T --connections 100 --concurrency 20 --sample 2
check 'statuses \{200: [0-9]+\}$' rest $APP $T --url-path /health --connections 4 --seconds 1
check 'statuses \{200: [0-9]+\}$' rest $APP $T --url-path /api/v1/me --connections 4 --seconds 1
check 'statuses \{200: [0-9]+\}$' logins $APP $T --rate 2 --seconds 1 --users 10
check 'result: PASS' abuse $APP $T --baseline-secs 1 --seconds 2 --topic-bytes 100000 --half-open 50 --socket-loop-max 100

# The cluster options (--servers, --server-pids, --redis-pid, --barrier) and redis-subs, against
# two app nodes linked through a throwaway redis-server.
command -v redis-server >/dev/null 2>&1 || { echo "bench/smoke.sh needs redis-server (apt-get install redis-server)" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
REDIS_PORT=
for p in $(seq 16479 16579); do port_open "$p" || { REDIS_PORT=$p; break; }; done
[ -n "$REDIS_PORT" ] || { echo "no free port for redis-server" >&2; exit 1; }
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >redis.log 2>&1 &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
for _ in $(seq 100); do port_open "$REDIS_PORT" && break; sleep 0.1; done
# /ready of node $1 (host:port) lists another member over a connected link?
linked() {
    local body
    body=$( (exec 3<>"/dev/tcp/${1%:*}/${1#*:}" && printf 'GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 && cat <&3) 2>/dev/null) || return 1
    grep -q '"members":\["' <<<"$body" && grep -q '"state":"connected"' <<<"$body"
}
NODE_ADDRS=(); NODE_PIDS=()
for name in sa sb; do
    FAWKES_PUBSUB__ADAPTER=redis FAWKES_PUBSUB__REDIS_URL="redis://127.0.0.1:$REDIS_PORT" FAWKES_NODE_NAME=$name \
        "$F" --bind 127.0.0.1:0 --log info >"$name.log" 2>&1 &
    NODE_PIDS+=("$!"); PIDS+=("$!")
    NODE_ADDRS+=("$(address_from "$name.log" 'listening on http://')")
done
for addr in "${NODE_ADDRS[@]}"; do
    for _ in $(seq 300); do linked "$addr" && break; sleep 0.1; done
    linked "$addr" || { echo "node $addr never linked" >&2; cat sa.log sb.log >&2; exit 1; }
done
C="--servers ${NODE_ADDRS[0]},${NODE_ADDRS[1]} --server-pids ${NODE_PIDS[0]},${NODE_PIDS[1]} --redis-pid $REDIS_PID"
check 'deliveries ([1-9][0-9]*) of \1 expected' fanout $C $T --topic room:smoke --subscribers 20 --rate 20 --seconds 1
check 'result: +PASS' presence-storm $C $T --topic room:smoke-storm --connections 100 --concurrency 20 --sample 4
check 'alive after hold: +100 of 100' conns --server "${NODE_ADDRS[1]}" $T --connections 100 --topics 5 --hold-secs 1 --barrier "$WORK/barrier" --parties 1
check 'per SUBSCRIBE\+UNSUBSCRIBE pair' redis-subs --redis "127.0.0.1:$REDIS_PORT" --redis-pid "$REDIS_PID" --pairs 200 --pipeline 8 --held 10
check '([1-9][0-9]*) of \1 bytes read' send-floor --connections 20 --rate 10 --seconds 1
check 'bytes per actor' actor-floor --actors 100
echo "==> every scenario ran"
