#!/usr/bin/env bash
# The JavaScript host's benchmark (docs/BENCHMARKS.md, "JavaScript host"):
# prepares everything under hosts/js/bench/out, then runs bench.mjs once.
#   - lowers fixtures/components/basics.p2.wasm and
#     benches/guests/built/temperature-component.wasm with `karmem-bridge lower`;
#   - `karmem-bridge gen ts` over their KarmemIDL, compiled with tsc;
#   - `jco transpile` of the same two components (p2), on the same node.
# Needs node, npm (hosts/js's devDependencies: scripts/runners.sh --js) and cargo.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
OUT="$HERE/out"
eval "$("$ROOT/scripts/runners.sh" --js)"
[ -n "${TSC:-}" ] && [ -n "${JCO:-}" ] || { echo "bench: node, TypeScript or jco unavailable" >&2; exit 1; }
# The Rust runtime's numbers for the same calls, in the same run: the scalar
# `add` (adapters' call_overhead bench, "karmem") and TemperatureBatch through
# the lowered component (the e2e bench's path (b), "b_lowered").
(cd "$ROOT" && cargo bench --locked -p karmem-adapters --bench call_overhead -- 'scalar add' 2>&1 | grep -E '^scalar add|time:')
(cd "$ROOT" && cargo bench --locked -p karmem-bench-e2e --bench e2e -- 'e2e/b_lowered' 2>&1 | grep -E '^e2e/b_lowered|time:')
cargo build -q -p karmem-bridge --release --manifest-path "$ROOT/Cargo.toml"
BRIDGE="$ROOT/target/release/karmem-bridge"
rm -rf "$OUT" && mkdir -p "$OUT/gen" "$OUT/node_modules"
ln -s "$ROOT/hosts/js" "$OUT/node_modules/karmem-host"
echo '{"type": "module", "private": true}' > "$OUT/package.json"
for pair in basics:fixtures/components/basics.p2.wasm temperature:benches/guests/built/temperature-component.wasm; do
    name="${pair%%:*}" src="$ROOT/${pair#*:}"
    "$BRIDGE" lower "$src" -o "$OUT/$name.wasm"
    # the lowered module's own KarmemIDL (its `karmem:idl` section)
    "$BRIDGE" inspect "$OUT/$name.wasm" | sed -n '/^  karmem:idl:$/,$p' | tail -n +2 > "$OUT/$name.km"
    "$BRIDGE" gen ts "$OUT/$name.km" -o "$OUT/gen/$name.ts"
    "$NODE" "$JCO" transpile "$src" -o "$OUT/jco-$name" -q --map 'karmem:fixtures/host=../jco-host.js'
done
printf 'export function log(_line) {}\n' > "$OUT/jco-host.js"
cat > "$OUT/tsconfig.json" <<'JSON'
{"compilerOptions": {"strict": true, "target": "es2022", "module": "nodenext", "moduleResolution": "nodenext",
 "lib": ["es2022", "dom"], "types": [], "rootDir": ".", "outDir": "js"}, "include": ["gen/*.ts"]}
JSON
"$NODE" "$TSC" -p "$OUT"
cd "$OUT" && "$NODE" "$HERE/bench.mjs" "$OUT"
