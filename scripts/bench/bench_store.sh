#!/usr/bin/env bash
# Memory that `embed` holds per song (the lean store writer) against opening the whole store (`query`),
# each in its own process, on a synthetic store of N songs (128-d vectors, realistic ids and tags).
#   bash scripts/bench/bench_store.sh [N=200000] [OUT=target/bench_store.json]
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-200000}"; out="${2:-target/bench_store.json}"
cargo build --release -q -p soundalike-recommend --example bench_store
bin=target/release/examples/bench_store
"$bin" "$n" writer >/dev/null   # creates the synthetic store once
w=$("$bin" "$n" writer); s=$("$bin" "$n" store)
echo "[$w, $s]" | tee "$out"
