//! End-to-end and differential test support.
//!
//! Owns: the reference runner (wasmtime's component runtime) and the harness
//! that compares it, value for value, with lowered modules on other runtimes.
