//! Fuzz target: WIT text to KarmemIDL (`karmem-wit-import`), with an overlay.
//!
//! Input: WIT text, optionally followed by a NUL byte and overlay text.
//! Properties, for any input:
//! - loading, mapping and the overlay never panic;
//! - when the world maps, the printed KarmemIDL loads (parses and resolves)
//!   and is in canonical form — what `karmem-bridge idl` promises.
//!
//! Owns: the check only; run by `fuzz_targets/wit_import.rs` and
//! `wit-import/tests/fuzz_wit_import.rs`.

#![allow(dead_code, clippy::panic)]

use karmem_wit_import::{Overlay, import_world, load_wit_text};

/// WIT words worth splicing into mutated sources.
pub const TOKENS: &[&[u8]] = &[
    b"package a:b@1.0.0;\n", b"world w {", b"interface i {", b"}", b"import ", b"export ", b"use ", b"include ",
    b"type t = ", b"record r {", b"variant v {", b"enum e {", b"flags f {", b"resource res {", b"constructor(",
    b"func(", b"-> ", b"list<", b"list<u8, 4>", b"option<", b"result<", b"tuple<", b"own<", b"borrow<", b"string",
    b"u8", b"s64", b"f32", b"char", b"bool", b">", b",", b";", b":", b"(", b")", b"%", b"@since(version = 1.0.0)",
    b"async ", b"stream<u8>", b"future", b"error-context", b"static ", b"\n", b"/// doc\n", b"\0pattern i=fanout\n",
    b"\0memory i.m=import:write,export:read,1\n",
];

pub fn run(data: &[u8]) {
    let (wit, overlay) = match data.iter().position(|&b| b == 0) {
        Some(at) => (data.get(..at).unwrap_or_default(), data.get(at + 1..).unwrap_or_default()),
        None => (data, &[][..]),
    };
    let Ok(wit) = std::str::from_utf8(wit) else { return };
    let overlay = std::str::from_utf8(overlay).ok().and_then(|text| Overlay::parse_file(text).ok());
    check(wit, overlay.as_ref());
}

pub fn check(wit: &str, overlay: Option<&Overlay>) {
    let Ok(loaded) = load_wit_text("fuzz.wit", wit, None) else { return };
    let Ok(mut imported) = import_world(&loaded.resolve, loaded.world) else { return };
    let printed = karmem_idl::print(&imported.file);
    check_printed(wit, &printed);
    if let Some(overlay) = overlay
        && overlay.apply(&mut imported).is_ok()
    {
        check_printed(wit, &karmem_idl::print(&imported.file));
    }
}

fn check_printed(wit: &str, printed: &str) {
    match karmem_idl::load(printed, "generated.km") {
        Ok(schema) => {
            let reprinted = karmem_idl::print(schema.file());
            assert!(reprinted == printed, "the generated KarmemIDL is not canonical\n--- wit\n{wit}\n--- printed\n{printed}");
        }
        Err(d) => panic!("the generated KarmemIDL does not load:\n{d}\n--- wit\n{wit}\n--- printed\n{printed}"),
    }
}
