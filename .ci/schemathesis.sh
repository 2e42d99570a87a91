#!/usr/bin/env bash
# Fuzzes a running Fawkes from its own OpenAPI document with schemathesis: no 5xx, every
# status, content type, header and body as the document says, 405 with `Allow` for other
# methods, 401 without the token. Starts the debug binary on a free loopback port with a
# throwaway database (SQLite; with SCHEMATHESIS_POSTGRES=postgres://USER:PASS@HOST/DB, a
# database of its own on that server, created and dropped with psql) and the rate limits off,
# registers two users, logs one in for a real bearer token, and runs every operation with a
# fixed seed and a bounded number of examples. Operations that end the session (log out,
# delete the account) run last, each on its own. Installs the pinned schemathesis into
# target/schemathesis-venv when missing.
#
# Usage: [SCHEMATHESIS_POSTGRES=URL] bash .ci/schemathesis.sh [MAX_EXAMPLES]   (default 25 per
# operation; SEED and CHECKS override the seed, 12, and the list of checks)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MAX_EXAMPLES=${1:-25}
SEED=${SEED:-12}
REQUIREMENTS=$ROOT/.ci/schemathesis-requirements.txt
VENV=$ROOT/target/schemathesis-venv

# The venv, rebuilt whenever the pinned list changes.
stamp=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$stamp" ]; then
    echo "installing schemathesis into $VENV"
    rm -rf "$VENV"
    if ! python3 -m venv "$VENV"; then
        echo "python3 or its venv module is missing: installing them"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq python3 python3-venv >/dev/null
        rm -rf "$VENV"
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$stamp" >"$VENV/.requirements"
fi

cargo build --locked -p fawkes --bin fawkes
FAWKES=$ROOT/target/debug/fawkes

WORK=$(mktemp -d)
SERVER=
PG_DB=
cleanup() {
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    if [ -n "$PG_DB" ]; then
        psql "$SCHEMATHESIS_POSTGRES" -qc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ -n "${SCHEMATHESIS_POSTGRES:-}" ]; then
    PG_DB=fawkes_fuzz_$$
    psql "$SCHEMATHESIS_POSTGRES" -qc "CREATE DATABASE \"$PG_DB\""
    DATABASE_URL="${SCHEMATHESIS_POSTGRES%/*}/$PG_DB"
else
    DATABASE_URL="sqlite://$WORK/fawkes.db?mode=rwc"
fi
echo "fuzzing on ${DATABASE_URL%%:*}"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
# Every rate limit off: the fuzzer sends far more than a client would (429 is in the document
# all the same).
(
    cd "$WORK"
    exec env \
        FAWKES_RATE_LIMIT__REQUESTS_PER_IP_PER_SECOND=0 \
        FAWKES_RATE_LIMIT__LOGIN_PER_IP_PER_MINUTE=0 \
        FAWKES_RATE_LIMIT__LOGIN_PER_EMAIL_PER_MINUTE=0 \
        FAWKES_RATE_LIMIT__LOGIN_PER_EMAIL_ALL_ADDRESSES_PER_MINUTE=0 \
        FAWKES_RATE_LIMIT__REGISTER_PER_IP_PER_MINUTE=0 \
        FAWKES_RATE_LIMIT__REGISTER_PER_MINUTE=0 \
        "$FAWKES" --env test --bind "127.0.0.1:$PORT" \
        --database-url "$DATABASE_URL" --log warn
) >"$WORK/server.log" 2>&1 &
SERVER=$!

up=
for _ in $(seq 1 100); do
    if curl -fsS "$URL/health" >/dev/null 2>&1; then
        up=1
        break
    fi
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.1
done
if [ -z "$up" ]; then
    echo "the server did not start:" >&2
    cat "$WORK/server.log" >&2
    exit 1
fi

PASSWORD=fuzzing-password-12
register() {
    curl -fsS -X POST "$URL/api/v1/users" -H 'content-type: application/json' \
        -d "{\"user\": {\"name\": \"$1\", \"subname\": \"Fuzz\", \"email\": \"$1@example.com\", \"job\": \"Tester\", \"password\": \"$PASSWORD\"}}" \
        >/dev/null
}
register alice
# Someone to open conversations with.
register bob
login() {
    curl -fsS -X POST "$URL/api/v1/sessions" -H 'content-type: application/json' \
        -d "{\"email\": \"alice@example.com\", \"password\": \"$PASSWORD\"}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["token"])'
}
TOKEN=$(login)
# Conversation 1 between alice (user 1) and bob (user 2), with a message: the document's
# examples name these ids, so the examples and coverage phases reach real records.
curl -fsS -X POST "$URL/api/v1/conversations" -H 'content-type: application/json' \
    -H "Authorization: Bearer $TOKEN" -d '{"recipient_id": 2}' >/dev/null
curl -fsS -X POST "$URL/api/v1/conversations/1/messages" -H 'content-type: application/json' \
    -H "Authorization: Bearer $TOKEN" -d '{"content": "hello"}' >/dev/null

# fuzz PHASES [OPTION...]: from the throwaway directory (schemathesis keeps a cache and reports
# in its working directory).
fuzz() {
    local phases=$1
    shift
    # One worker: the fixed seed then gives the same cases in the same order. The wall-clock
    # bound stops a run that would hang CI (it fails it).
    (cd "$WORK" && timeout "${FUZZ_TIMEOUT:-300}" "$VENV/bin/schemathesis" run "$URL/api/openapi.json" \
        --url "$URL" \
        --header "Authorization: Bearer $TOKEN" \
        --checks "${CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,unsupported_method,allow_header_conformance,missing_required_header,ignored_auth}" \
        --phases "$phases" \
        --max-examples "$MAX_EXAMPLES" \
        --seed "$SEED" \
        --workers 1 \
        --request-timeout 20 \
        --no-color \
        "$@")
}

status=0
echo "==> every operation but log out and account deletion"
# Stateful: sequences along the document's links (register → read the user, open a
# conversation → read it, post to it, read its history).
fuzz examples,coverage,fuzzing,stateful \
    --exclude-operation-id log_out --exclude-operation-id delete_user || status=1
echo "==> log out, with a token of its own"
TOKEN_KEPT=$TOKEN
TOKEN=$(login)
fuzz examples,coverage,fuzzing --include-operation-id log_out || status=1
echo "==> account deletion (it ends the session: last)"
TOKEN=$TOKEN_KEPT
fuzz examples,coverage,fuzzing --include-operation-id delete_user || status=1
if [ "$status" -ne 0 ]; then
    echo "schemathesis found problems; the server's log:" >&2
    tail -n 50 "$WORK/server.log" >&2
fi
exit "$status"
