//! `cargo +nightly fuzz run wit_import`: see `src/targets/wit_import.rs` for what it checks.

#![no_main]

static QUIET_GUARDED_PANICS: std::sync::Once = std::sync::Once::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // libFuzzer's panic hook aborts on every panic, even one `karmem-wit-import`
    // catches around wit-parser (which panics on some malformed WIT, reported
    // upstream); such a panic becomes an error, which is what the target checks.
    QUIET_GUARDED_PANICS.call_once(|| {
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !karmem_wit_import::in_guarded_parse() {
                abort(info);
            }
        }));
    });
    karmem_fuzz::targets::wit_import::run(data);
});
