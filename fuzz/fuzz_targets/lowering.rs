//! `cargo +nightly fuzz run lowering`: see `src/targets/lowering.rs` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = karmem_fuzz::targets::lowering::run(data);
});
