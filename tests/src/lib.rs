//! End-to-end and differential test support.
//!
//! Owns: the reference runner (wasmtime's component runtime) and the harness
//! that compares it, value for value, with lowered modules on other runtimes.
//! The tests themselves are in `tests/`.

pub mod canonical_host;
pub mod fixtures;
pub mod harness;
pub mod host;
pub mod invocation;
pub mod reference;
pub mod value;
