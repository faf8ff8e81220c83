#!/usr/bin/env bash
# The main job on a bundled default: lower the `basics` fixture component into one
# core module with the Karmem ABI at its edge, show its interfaces, and run two of
# its functions on karmem-runtime (wasmtime with the component model off).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build -q -p karmem-bridge
bridge=target/debug/karmem-bridge
out=target/demo/basics.lowered.wasm
mkdir -p target/demo
set -x
"$bridge" lower fixtures/components/basics.p2.wasm -o "$out"
"$bridge" inspect "$out"
"$bridge" run "$out" --invoke 'add(2, 40)'
"$bridge" run "$out" --invoke 'relabel([{x: 1, y: 2, label: "a"}, {x: 3, y: 4, label: ""}], "-x")'
