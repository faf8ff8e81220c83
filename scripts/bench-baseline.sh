#!/bin/sh
# Lower the benchmark components with karmem-bridge as it was at git revision REV,
# for the before/after rows of `call_overhead` and `e2e` (KARMEM_BENCH_BASELINE).
#
#   scripts/bench-baseline.sh REV [OUT_DIR]     # OUT_DIR defaults to target/bench-baseline/REV
#   KARMEM_BENCH_BASELINE=target/bench-baseline/REV cargo bench -p karmem-adapters --bench call_overhead
#   KARMEM_BENCH_BASELINE=target/bench-baseline/REV cargo bench -p karmem-bench-e2e --bench e2e
#
# REV is checked out into a git worktree under target/ and built there with its own
# target directory (the first build takes as long as a clean build).
set -eu
root="$(cd "$(dirname "$0")/.." && pwd)"
rev="${1:?usage: scripts/bench-baseline.sh REV [OUT_DIR]}"
sha="$(git -C "$root" rev-parse --short "$rev^{commit}")"
out="${2:-$root/target/bench-baseline/$sha}"
tree="$root/target/bench-baseline/tree-$sha"
if [ ! -d "$tree" ]; then
    git -C "$root" worktree add --detach -f "$tree" "$sha" >/dev/null
fi
CARGO_TARGET_DIR="$root/target/bench-baseline/target" cargo build --locked -q -p karmem-bridge --manifest-path "$tree/Cargo.toml"
bridge="$root/target/bench-baseline/target/debug/karmem-bridge"
mkdir -p "$out"
"$bridge" lower --abi karmem "$root/fixtures/components/basics.core.wasm" -o "$out/basics.core.wasm"
"$bridge" lower --abi karmem "$root/benches/guests/built/temperature-component.wasm" -o "$out/temperature-component.wasm"
echo "baseline of $sha in $out"
