//! `cargo +nightly fuzz run adapters`: see `src/targets/adapters.rs` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = karmem_fuzz::targets::adapters::run(data);
});
