//! The fuzz targets' logic, one module per target, shared with the crates'
//! ordinary tests (`tests/*fuzz*.rs` include these files with `#[path]`), and
//! the deterministic mutator those tests use.
//!
//! Owns: the properties each target checks. The libFuzzer entry points are
//! `fuzz_targets/*.rs`; how to run them and what runs found is
//! `docs/HARDENING.md`.

pub mod mutate;

pub mod targets {
    pub mod adapters;
    pub mod format;
    pub mod idl;
    pub mod lowering;
    pub mod wit_import;
}
