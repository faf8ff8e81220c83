//! `cargo +nightly fuzz run wit_import`: see `src/targets/wit_import.rs` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    karmem_fuzz::targets::wit_import::run(data);
});
