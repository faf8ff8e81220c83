// karmem-bridge's Go host: run lowered core wasm modules (Karmem ABI, docs/ABI.md)
// on wazero, with typed views from `karmem-bridge gen go` (docs/FORMAT.md).
module karmem-bridge/hosts/go

go 1.22

require github.com/tetratelabs/wazero v1.9.0
