#!/bin/sh
# Time `lower` (release build, in-process, median of 5) against
# `jco transpile` (npm @bytecodealliance/jco, median of 3 wall times,
# node start-up included) on the same component, in one run.
# Usage: core-lowering/benches/vs_jco.sh FILE.wasm [JCO]
# JCO defaults to `npx --yes @bytecodealliance/jco`; needs node and npm.
set -eu
file=$1
jco=${2:-"npx --yes @bytecodealliance/jco"}
root=$(cd "$(dirname "$0")/../.." && pwd)
cargo build --release -q -p karmem-core-lowering --example time_lower --manifest-path "$root/Cargo.toml"
"$root/target/release/examples/time_lower" "$file" 5
out=$(mktemp -d)
times=""
for i in 1 2 3; do
  start=$(date +%s.%N)
  $jco transpile "$file" -o "$out/t$i" -q >/dev/null 2>&1
  end=$(date +%s.%N)
  times="$times $(echo "$end - $start" | bc)"
done
echo "jco transpile: runs$times s (median $(echo $times | tr ' ' '\n' | sort -n | sed -n 2p) s)"
rm -rf "$out"
