#!/usr/bin/env bash
# The cold build of a new project that embeds the runtime (BENCHMARKS.md, issue 10): a fresh
# project depending on one crate of this workspace by path, building one example as its main,
# with an empty target directory. Prints the crates compiled and the wall time.
#
#   bash bench/cold-build.sh runtime cursors     # depends on fawkes-runtime, builds examples/cursors.rs
#   bash bench/cold-build.sh runtime echo
#   bash bench/cold-build.sh app echo            # depends on the whole app (`fawkes`) instead
#
# An example's tests (`#[cfg(test)]` to the end of the file) are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
which=${1:?runtime or app}; example=${2:?an example name}
case $which in
    runtime) dep="fawkes-runtime = { path = \"$ROOT/runtime\" }" ;;
    app) dep="fawkes = { path = \"$ROOT\" }" ;;
    *) echo "runtime or app" >&2; exit 2 ;;
esac
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/src"
cat >"$dir/Cargo.toml" <<TOML
[package]
name = "cold-build"
version = "0.1.0"
edition = "2024"

[dependencies]
$dep
tokio = { version = "1", features = ["rt-multi-thread", "macros", "signal", "net", "time"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
tokio-util = "0.7"
TOML
sed '/^#\[cfg(test)\]/,$d' "examples/$example.rs" >"$dir/src/main.rs"
cd "$dir"
cargo generate-lockfile -q
cargo fetch -q
start=$(date +%s)
compiled=$(cargo build 2>&1 | grep -c "Compiling" || true)
echo "$which/$example: $compiled crates compiled in $(( $(date +%s) - start )) s (debug, empty target directory, $(nproc) cores)"
