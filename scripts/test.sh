#!/usr/bin/env bash
# The project's test command (the README's second command): the no-panic
# lints (denied in the workspace's lint table, docs/HARDENING.md §6), then
# every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo clippy --workspace --all-targets --locked
cargo test --workspace --locked
# The Go host (hosts/go) against the host kit; skipped with a note without Go.
hosts/go/test.sh
