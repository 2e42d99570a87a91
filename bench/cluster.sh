#!/usr/bin/env bash
# The cluster figures of BENCHMARKS.md ("A cluster of three nodes over Redis"): builds release
# binaries, starts its own redis-server on a free port, seeds users into one shared SQLite
# database, starts three `fawkes` nodes on 127.0.0.1:4001-4003 linked through that Redis, and
# runs, each against freshly started nodes:
#   1. 45,000 joined connections, 15,000 per node (three `conns` processes that hold together);
#   2. cross-node fan-out: 3,000 subscribers of one room, 1,000 per node, 50 messages/s
#      published on node 1;
#   3. a presence storm of 15,000 users joining one room, on one node without a cluster (the
#      baseline), then through the three nodes, then a fresh client on each node until it is
#      told all 15,000 users;
#   4. what the shared Redis stream costs a node with no subscriber for a topic (2,000
#      messages/s published on node 1 for a room whose only subscriber is there), against what
#      per-topic Redis subscriptions would cost Redis (`redis-subs`).
# Outputs go to target/bench-results/cluster-*.txt (node logs: cluster-node*.log). Six to eight
# minutes once built (11 in a slow hour); stops everything it started, even on failure.
# Needs redis-server, curl, jq and sqlite3.
#
#   bash bench/cluster.sh
#
# The database is SQLite because no scenario writes to it (connects read the user; room
# messages are not stored): the script checks that the database's contents are the same after
# the runs as after seeding.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/target/bench-results
WORK=$(mktemp -d)
NODES=3
USERS=45000
PIDS=()
REDIS_PID=
FAILED=()

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Stops process $1: SIGINT (a graceful shutdown), then SIGKILL after 20 s, saying so.
stop_pid() {
    local pid=$1
    kill -INT "$pid" 2>/dev/null || return 0
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }; sleep 0.1; done
    echo "process $pid ignored SIGINT for 20 s: killed" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [ -n "$REDIS_PID" ]; then kill -TERM "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 || {
    echo "bench/cluster.sh needs redis-server and redis-cli (Debian/Ubuntu: apt-get install redis-server)" >&2
    exit 1
}
for tool in curl jq sqlite3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench/cluster.sh needs $tool (Debian/Ubuntu: apt-get install $tool)" >&2; exit 1; }
done
for i in $(seq "$NODES"); do
    if port_open "400$i"; then echo "port 400$i is in use: the nodes listen on 127.0.0.1:4001-400$NODES" >&2; exit 1; fi
done
mkdir -p "$OUT"

cargo build --release --locked -p fawkes -p fawkes-bench -p fawkes-runtime --bins --example echo
F=$ROOT/target/release/fawkes
B=$ROOT/target/release/fawkes-bench

# Redis on the first free port from 16379, nothing persisted.
REDIS_PORT=
for p in $(seq 16379 16479); do port_open "$p" || { REDIS_PORT=$p; break; }; done
[ -n "$REDIS_PORT" ] || { echo "no free port for redis-server in 16379-16479" >&2; exit 1; }
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
    --dir "$WORK" >"$OUT/cluster-redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 100); do [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break; sleep 0.1; done
[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] || { echo "redis-server did not start:" >&2; cat "$OUT/cluster-redis.log" >&2; exit 1; }

cd "$WORK"
export DATABASE_URL=sqlite://cluster.db
FAWKES_SECRET_KEY=$("$F" gen-secret --log warn)
export FAWKES_SECRET_KEY
"$F" seed --users "$USERS" --tokens-out tokens.txt --log warn
# Distinct users per node for the 45,000 connections; the first 15,000 for the other scenarios.
for i in $(seq "$NODES"); do sed -n "$(( (i - 1) * 15000 + 1 )),$(( i * 15000 ))p" tokens.txt >"tokens-$i.txt"; done
db_digest() { sqlite3 cluster.db .dump | sha256sum | cut -d' ' -f1; }
DB_SEEDED=$(db_digest)

# The knobs of bench/run.sh's start_app (no per-address connection cap, no login, request or
# per-socket message limits), and the cluster's: every node on the same Redis and prefix.
export FAWKES_RATE_LIMIT__LOGIN_PER_IP_PER_MINUTE=1000000 FAWKES_RATE_LIMIT__LOGIN_PER_EMAIL_PER_MINUTE=1000000 \
    FAWKES_HTTP__MAX_CONNECTIONS_PER_IP=0 FAWKES_SOCKET__MAX_MESSAGES_PER_SECOND=0 \
    FAWKES_RATE_LIMIT__REQUESTS_PER_IP_PER_SECOND=0 \
    FAWKES_PUBSUB__ADAPTER=redis FAWKES_PUBSUB__REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
    FAWKES_PUBSUB__REDIS_PREFIX="bench$$"

NODE_PIDS=()
SERVERS=
start_nodes() {
    NODE_PIDS=()
    for i in $(seq "$NODES"); do
        FAWKES_NODE_NAME="n$i" "$F" --bind "127.0.0.1:400$i" --log warn >>"$OUT/cluster-node$i.log" 2>&1 &
        NODE_PIDS+=("$!"); PIDS+=("$!")
    done
    # Ready: each node's /ready lists the other nodes as members, over a connected link.
    local want=$((NODES - 1)) deadline=$((SECONDS + 60))
    for i in $(seq "$NODES"); do
        until [ "$(curl -sf "http://127.0.0.1:400$i/ready" | jq -r "(.pubsub.members | length) == $want and .pubsub.state == \"connected\"" 2>/dev/null)" = true ]; do
            if [ "$SECONDS" -ge "$deadline" ]; then
                echo "node $i never listed $want members: $(curl -s "http://127.0.0.1:400$i/ready")" >&2
                tail -n 20 "$OUT/cluster-node$i.log" >&2; exit 1
            fi
            sleep 0.1
        done
    done
    SERVERS=$(seq -s, -f '127.0.0.1:400%g' "$NODES")
    echo "==> $NODES nodes ready: $(curl -s http://127.0.0.1:4001/ready | jq -c .pubsub)"
}
# Stops the processes given and forgets them.
stop_pids() {
    local pid keep=()
    for pid in "$@"; do stop_pid "$pid"; done
    for pid in "${PIDS[@]}"; do [[ " $* " == *" $pid "* ]] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
}
stop_nodes() { stop_pids "${NODE_PIDS[@]}"; }
node_pids() { local IFS=,; echo "${NODE_PIDS[*]}"; }
# Runs fawkes-bench, its output to the terminal and to $OUT/cluster-$1.txt; a failure is
# recorded and the script goes on.
run() {
    local name=$1; shift
    echo "==> cluster-$name"
    set +e
    "$B" "$@" 2>&1 | tee "$OUT/cluster-$name.txt"
    local rc=${PIPESTATUS[0]}
    set -e
    [ "$rc" = 0 ] || FAILED+=("$name")
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
for i in $(seq "$NODES"); do : >"$OUT/cluster-node$i.log"; done

# 1. 45,000 joined connections: one conns process per node, holding together for 20 s; 300
#    rooms of 150 (50 per node), the room size of BENCHMARKS.md's single-node app figure. At
#    most 128 connects at a time per node: each connect reads its user from the database (a
#    pool of 10), and more at once only queue there, past the pool's 10 s acquire timeout.
start_nodes
echo "==> cluster-conns"
CONNS=()
for i in $(seq "$NODES"); do
    "$B" conns --server "127.0.0.1:400$i" --server-pid "${NODE_PIDS[$((i - 1))]}" --tokens "tokens-$i.txt" \
        --connections 15000 --topics 300 --topic-prefix room:conns- --concurrency 128 --sources 8 --hold-secs 20 \
        --barrier "$WORK/barrier" --parties "$NODES" >"$WORK/conns-$i.txt" 2>&1 &
    CONNS+=("$!")
done
for i in $(seq "$NODES"); do
    wait "${CONNS[$((i - 1))]}" || FAILED+=("conns-node$i")
done
for i in $(seq "$NODES"); do echo "--- node $i (127.0.0.1:400$i)"; cat "$WORK/conns-$i.txt"; done | tee "$OUT/cluster-conns.txt"
stop_nodes

# 2. Cross-node fan-out: 1,000 subscribers per node, published on node 1.
start_nodes
run fanout fanout --servers "$SERVERS" --server-pids "$(node_pids)" --redis-pid "$REDIS_PID" \
    --tokens tokens.txt --topic room:fanout --subscribers 3000 --publishers 1 --rate 50 --seconds 10 --publish-node 1
stop_nodes

# 3. Presence storm: first on one node without a cluster (the same machine's baseline), then
#    through the three nodes; 128 connects at a time (at 512 a saturated single node kept
#    connects waiting on its database pool past the 10 s acquire timeout, and refused them).
FAWKES_PUBSUB__ADAPTER=memory "$F" --bind 127.0.0.1:4001 --log warn >>"$OUT/cluster-node1.log" 2>&1 &
SINGLE=$!; PIDS+=("$SINGLE")
for _ in $(seq 100); do port_open 4001 && break; sleep 0.1; done
run storm-single presence-storm --server 127.0.0.1:4001 --server-pid "$SINGLE" --tokens tokens.txt \
    --topic room:storm --connections 15000 --concurrency 128 --sources 8
stop_pids "$SINGLE"
start_nodes
run storm presence-storm --servers "$SERVERS" --server-pids "$(node_pids)" --redis-pid "$REDIS_PID" \
    --tokens tokens.txt --topic room:storm --connections 15000 --concurrency 128 --sources 8 --sample 9
stop_nodes

# 4. The shared stream's waste, then per-topic subscription's cost to Redis.
start_nodes
{
    echo "idle (10 s, nothing connected): CPU seconds per node and of redis-server"
    declare -a t0 t1
    for i in $(seq "$NODES"); do t0[i]=$(cpu_ticks "${NODE_PIDS[$((i - 1))]}"); done
    r0=$(cpu_ticks "$REDIS_PID")
    sleep 10
    for i in $(seq "$NODES"); do t1[i]=$(cpu_ticks "${NODE_PIDS[$((i - 1))]}"); done
    r1=$(cpu_ticks "$REDIS_PID")
    for i in $(seq "$NODES"); do echo "idle node $i:         CPU $(( (t1[i] - t0[i]) * 10 )) ms in 10 s"; done
    echo "idle redis-server:   CPU $(( (r1 - r0) * 10 )) ms in 10 s"
} | tee "$OUT/cluster-stream-idle.txt"
run stream fanout --servers "$SERVERS" --server-pids "$(node_pids)" --redis-pid "$REDIS_PID" \
    --tokens tokens.txt --topic room:solo --subscribers 1 --subscriber-nodes 1 --publishers 1 --rate 2000 --seconds 10
stop_nodes
R="--redis 127.0.0.1:$REDIS_PORT --redis-pid $REDIS_PID --pairs 100000"
run subs-1 redis-subs $R --pipeline 1
run subs-1-held redis-subs $R --pipeline 1 --held 15000
run subs-64-held redis-subs $R --pipeline 64 --held 15000

DB_AFTER=$(db_digest)
if [ "$DB_SEEDED" = "$DB_AFTER" ]; then
    echo "database: the same contents after the runs as after seeding (no scenario wrote to it)" | tee "$OUT/cluster-db.txt"
else
    echo "database: its contents CHANGED during the runs (some scenario wrote to it)" | tee "$OUT/cluster-db.txt"
fi
echo "==> results in $OUT/cluster-*.txt"
if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "failed: ${FAILED[*]}" >&2
    exit 1
fi
