//! `cargo +nightly fuzz run format`: see `src/targets/format.rs` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = karmem_fuzz::targets::format::run(data);
});
