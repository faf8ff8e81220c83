//! A wasmtime host for lowered Karmem modules.
//!
//! Will own: the `KarmemInit` handshake, linking guests by interface pattern
//! (direct, fanout, singleton, pool), zero-copy shared memories with
//! permissions, containment (timeouts, memory limits, fuel) and the module cache.
//!
//! Does not own: producing lowered modules (`karmem-core-lowering`, `karmem-adapters`).
