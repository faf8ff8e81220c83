#!/usr/bin/env bash
# One benchmark run of the Go host next to the Rust runtime (docs/BENCHMARKS.md,
# "Go host"): the scalar `add` (adapters' call_overhead bench, "karmem") and
# TemperatureBatch with 10 and 10,000 readings (the e2e bench's path (b),
# "b_lowered"), then the same calls through hosts/go. Prints the medians.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
cargo bench --locked -p karmem-adapters --bench call_overhead -- 'scalar add' 2>&1 | grep -E '^scalar add|time:'
cargo bench --locked -p karmem-bench-e2e --bench e2e -- 'e2e/b_lowered' 2>&1 | grep -E '^e2e/b_lowered|time:'
cargo build --quiet --locked -p karmem-bridge
mkdir -p target/go-host
target/debug/karmem-bridge lower benches/guests/built/temperature-component.wasm -o target/go-host/temperature.wasm
KARMEM_TEMPERATURE_WASM="$ROOT/target/go-host/temperature.wasm" hosts/go/test.sh -run '^$' -bench . -benchtime 2s
