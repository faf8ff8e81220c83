// Go module of karmem-bridge's wazero conformance runner (main.go): runs
// lowered core wasm modules on wazero. Built offline by scripts/runners.sh
// against the read-only wazero source vendored in ../shared/vendor/wazero.
module karmem-bridge/tests/runners/wazero

go 1.27

require github.com/tetratelabs/wazero v1.9.0

replace github.com/tetratelabs/wazero => ../../../../shared/vendor/wazero
