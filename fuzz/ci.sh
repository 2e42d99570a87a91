#!/usr/bin/env bash
# Runs every fuzz target briefly, starting from the inputs kept in fuzz/corpus/ and
# fuzz/regressions/ (what the fuzzers once found: replayed as every run starts), and fails on
# any crash (a panic, a broken property, an allocation over the linear bound), hang (one input
# over 10 s) or memory blow-up (over 2 GiB). Installs the pinned cargo-fuzz when it is missing.
#
#   bash fuzz/ci.sh [SECONDS_PER_TARGET]     (default 40)
#
# New inputs found on the way go to a temporary directory: the repository is not changed. A
# crashing input is saved under fuzz/artifacts/<target>/ and printed (base64) in the log.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET="${1:-40}"
CARGO_FUZZ_VERSION=0.13.2
TARGETS=(decode_v1 decode_v2 decode_binary params page_query upgrade)

dict_for() {
    case "$1" in
        decode_v1 | decode_v2 | params) echo dict/json.dict ;;
        decode_binary) echo dict/binary.dict ;;
        page_query) echo dict/query.dict ;;
        upgrade) echo dict/upgrade.dict ;;
        *) echo "no dictionary for $1" >&2; exit 1 ;;
    esac
}

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# cargo fuzz has no --locked: check fuzz/Cargo.lock up front instead.
if ! cargo fetch --locked --quiet; then
    echo "fuzz/Cargo.lock is out of date (did the root Cargo.toml gain a dependency?):" >&2
    echo "  run 'cargo update --manifest-path fuzz/Cargo.toml --workspace' and commit fuzz/Cargo.lock" >&2
    exit 1
fi

# No sanitizer: the toolchain is stable (AddressSanitizer needs nightly) and Fawkes forbids
# unsafe code; libFuzzer's coverage instrumentation works on stable.
# --dev: unoptimised, with debug assertions and overflow checks. On a fresh clone the optimised
# build (one codegen unit, all of Fawkes's dependencies instrumented) takes 6 to 9 minutes of
# the CI budget, the dev build about 2; a brief run from the kept corpus needs coverage of what
# the corpus reaches, not speed. Long runs (fuzz/README.md) use the optimised build.
cargo fuzz build --dev --sanitizer none

status=0
for target in "${TARGETS[@]}"; do
    found=$(mktemp -d)
    log=$(mktemp)
    mkdir -p "artifacts/$target"
    inputs=("corpus/$target")
    if [ -d "regressions/$target" ]; then
        inputs+=("regressions/$target")
    fi
    started=$SECONDS
    if cargo fuzz run --dev --sanitizer none "$target" "$found" "${inputs[@]}" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -dict="$(dict_for "$target")" -artifact_prefix="artifacts/$target/" \
        -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
        cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | grep -o 'cov: [0-9]*' || true)
        echo "fuzz $target: ok, ${runs:-?} runs in $((SECONDS - started)) s, ${cov:-cov: ?}"
    else
        echo "fuzz $target: FAILED (crash, hang or memory limit); the end of its log:" >&2
        tail -n 80 "$log" >&2
        status=1
    fi
    rm -rf "$found" "$log"
done
exit "$status"
