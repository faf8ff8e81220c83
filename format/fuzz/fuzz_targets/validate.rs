//! `cargo +nightly fuzz run validate` (from `format/`): arbitrary bytes into
//! `validate` for a schema covering every construct; whatever it accepts must
//! decode. The same check runs as ordinary tests in `format/tests/hostile.rs`.

#![no_main]

use std::sync::OnceLock;

use karmem_format::value::decode;
use karmem_format::{ErrorKind, Layout, Limits, validate};
use libfuzzer_sys::fuzz_target;

const SCHEMA: &str = include_str!("../../../fixtures/idl/constructs.km");

fn layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let file = karmem_idl::parse(SCHEMA).expect("fixture parses");
        let schema = karmem_idl::resolve(file).expect("fixture resolves");
        Layout::new(&schema).expect("fixture lays out")
    })
}

fuzz_target!(|data: &[u8]| {
    let layout = layout();
    let limits = Limits { max_depth: 32, max_visit: 1 << 20, max_columns: 64 };
    let Some((&pick, bytes)) = data.split_first() else { return };
    let items = layout.named_items();
    let Some(&(_, root)) = items.get(pick as usize % items.len().max(1)) else { return };
    if validate(bytes, layout, root, &limits).is_ok() {
        match decode(layout, root, bytes, &limits) {
            Ok(_) => {}
            Err(e) if e.kind == ErrorKind::NoDefault => {}
            Err(e) => panic!("validated message fails to decode: {e}"),
        }
    }
});
