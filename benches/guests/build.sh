#!/usr/bin/env bash
# Rebuilds the end-to-end benchmark's guests into benches/guests/built/,
# reproducibly (same sources and toolchain, same bytes). Needs the target
# wasm32-unknown-unknown (`rustup target add wasm32-unknown-unknown`).
#
# Usage: benches/guests/build.sh
#
#   temperature-component.wasm  path (a), and (b) after lowering: wasm32-unknown-unknown
#                                + wit-component (xtask componentize), no WASI
#   temperature-karmem.wasm      paths (c) and (e): a core module with the Karmem ABI,
#                                built with +simd128
#   temperature-json.wasm        path (d): a core module parsing JSON with serde_json
#
# `temperature-karmem/src/generated.rs` comes from `karmem-bridge gen rust
# benches/guests/temperature.km`; `temperature-karmem/descriptor.bin` from
# `BLESS=1 cargo test -p karmem-bench-e2e` (the test fails when either is stale).
set -euo pipefail

guests=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$guests/../.." && pwd)
out=$guests/built
mkdir -p "$out"

cargo_home=${CARGO_HOME:-$HOME/.cargo}
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
remap="--remap-path-prefix=$root=/karmem --remap-path-prefix=$cargo_home=/cargo --remap-path-prefix=$rustup_home=/rustup"
target=wasm32-unknown-unknown
target_dir=$guests/target

build() {
    local flags=$1
    shift
    RUSTFLAGS="$remap $flags" CARGO_TARGET_DIR=$target_dir SOURCE_DATE_EPOCH=0 CARGO_INCREMENTAL=0 \
        cargo build --quiet --locked --release --manifest-path "$guests/Cargo.toml" --target $target "$@"
}

build "" -p temperature-component -p temperature-json
cp "$target_dir/$target/release/temperature_json.wasm" "$out/temperature-json.wasm"
# A separate target dir: different RUSTFLAGS must not evict the others' builds.
CARGO_TARGET_DIR_SIMD=$target_dir/simd
RUSTFLAGS="$remap -C target-feature=+simd128" CARGO_TARGET_DIR=$CARGO_TARGET_DIR_SIMD SOURCE_DATE_EPOCH=0 CARGO_INCREMENTAL=0 \
    cargo build --quiet --locked --release --manifest-path "$guests/Cargo.toml" --target $target -p temperature-karmem
cp "$CARGO_TARGET_DIR_SIMD/$target/release/temperature_karmem.wasm" "$out/temperature-karmem.wasm"

cargo build --quiet --manifest-path "$root/Cargo.toml" -p xtask
xtask=${CARGO_TARGET_DIR:-$root/target}/debug/xtask
"$xtask" componentize "$target_dir/$target/release/temperature_component.wasm" "$out/temperature-component.wasm"
ls -l "$out"
