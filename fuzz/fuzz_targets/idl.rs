//! `cargo +nightly fuzz run idl`: see `src/targets/idl.rs` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    karmem_fuzz::targets::idl::run(data);
});
