#!/usr/bin/env bash
# Reproduces every figure in BENCHMARKS.md: builds release binaries, seeds users, starts the app
# and the echo example on loopback, runs each fawkes-bench scenario, and writes the outputs to
# target/bench-results/. Takes about seven minutes on the 2-core machine; stops everything it
# started, even on failure. The cluster section's figures come from `bash bench/cluster.sh`.
#
#   bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/bench-results
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT"

cargo build --release --locked -p fawkes -p fawkes-bench -p fawkes-runtime --bins --example echo
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
F=$BIN/fawkes
B=$BIN/fawkes-bench
ECHO=$BIN/examples/echo

wait_for() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

cd "$WORK"
"$F" seed --users 15000 --tokens-out tokens.txt --log warn
T="--tokens $WORK/tokens.txt"

# The load generator opens thousands of connections from each of a few 127.0.0.x addresses:
# lift the per-address connection cap (and the login limits). The echo scenarios push as fast
# as each socket is answered (about 1,600 messages/s per socket), far over the default
# per-socket message rate (200/s): turn that off here and in the echo example, because Phoenix,
# which these figures are compared with, has no such limit. (The fan-out, churn and conns
# scenarios stay under it either way.)
start_app() {
    FAWKES_RATE_LIMIT__LOGIN_PER_IP_PER_MINUTE=1000000 FAWKES_RATE_LIMIT__LOGIN_PER_EMAIL_PER_MINUTE=1000000 \
        FAWKES_HTTP__MAX_CONNECTIONS_PER_IP=0 FAWKES_SOCKET__MAX_MESSAGES_PER_SECOND=0 \
        FAWKES_RATE_LIMIT__REQUESTS_PER_IP_PER_SECOND=0 \
        "$F" --log warn >"$OUT/server.log" 2>&1 &
    APP=$!; PIDS+=("$APP"); wait_for 4000
}
stop() { kill -INT "$1"; wait "$1" 2>/dev/null || true; }
start_echo() { "$ECHO" 127.0.0.1:4100 --max-messages-per-second 0 >/dev/null 2>&1 & ECHOPID=$!; PIDS+=("$ECHOPID"); wait_for 4100; }
E="--server 127.0.0.1:4100"

run() { local name=$1; shift; echo "==> $name"; "$B" "$@" | tee "$OUT/$name.txt"; }

start_app
run presence-storm presence-storm $T --connections 15000 --server-pid "$APP"
stop "$APP"

# The app's rooms at rest: 15,000 idle joined connections over 1,000 `room:` topics, each
# tracking its presence (memory per connection with the presence state).
start_app
run conns-app conns $T --connections 15000 --topics 1000 --server-pid "$APP"
stop "$APP"

start_app
run rest-health rest $T --url-path /health --connections 32 --seconds 10 --server-pid "$APP"
run rest-me rest $T --url-path /api/v1/me --connections 32 --seconds 10 --server-pid "$APP"
run echo-app echo $T --topic room:echo --event ping --connections 50 --seconds 10 --server-pid "$APP"
"$B" logins $T --rate 50 --seconds 12 --server-pid "$APP" >"$OUT/logins.txt" 2>&1 &
LOGINS=$!
sleep 1
run echo-app-during-logins echo $T --topic room:echo2 --event ping --connections 50 --seconds 10 --server-pid "$APP"
wait "$LOGINS" || true
cat "$OUT/logins.txt"
stop "$APP"

start_echo
run conns conns $E $T --connections 15000 --topics 100 --topic-prefix echo: --server-pid "$ECHOPID"
stop "$ECHOPID"
start_echo
run echo echo $E $T --connections 50 --seconds 10 --server-pid "$ECHOPID"
run fanout-1000x50 fanout $E $T --subscribers 1000 --publishers 1 --rate 50 --seconds 10 --server-pid "$ECHOPID"
run fanout-10000x5 fanout $E $T --subscribers 10000 --publishers 1 --rate 5 --seconds 10 --server-pid "$ECHOPID"
stop "$ECHOPID"
start_echo
run churn-warmup churn $E $T --workers 20 --seconds 20 --server-pid "$ECHOPID"
run churn churn $E $T --workers 20 --seconds 20 --server-pid "$ECHOPID"
stop "$ECHOPID"

# A legitimate client beside three attackers, against the app with its default settings.
"$F" --log warn >"$OUT/server-abuse.log" 2>&1 &
APP=$!; PIDS+=("$APP"); wait_for 4000
run abuse abuse $T --server-pid "$APP"
stop "$APP"

# Floors measured without any server: the kernel's cost of a small loopback write (the floor under
# CPU per delivery) and the memory of an idle ractor actor (the floor under a connection's).
run send-floor-1000x50 send-floor --connections 1000 --rate 50 --seconds 10
run send-floor-9000x5 send-floor --connections 9000 --rate 5 --seconds 10
run actor-floor actor-floor --actors 15000

echo "==> results in $OUT"
