//! Fuzz target: the KarmemIDL parser, resolver, diagnostics and printer.
//!
//! Properties, for any UTF-8 input:
//! - nothing panics, and errors render as diagnostics;
//! - when the input parses, its printed form parses and prints to itself
//!   (`fmt` is idempotent);
//! - the input and its printed form resolve alike: both fail, or both
//!   succeed and `compat` sees no change between them.
//!
//! Owns: the check only; run by `fuzz_targets/idl.rs` and `idl/tests/fuzz_parser.rs`.

#![allow(dead_code, clippy::panic)]

/// Keywords and punctuation worth splicing into mutated sources.
pub const TOKENS: &[&[u8]] = &[
    b"struct ", b"enum ", b"union ", b"flags ", b"interface ", b"resource ", b"package a:b@1.0.0;", b"(inline)",
    b"(dynamic)", b"(dynamic, u32)", b"(u8)", b"(dynamic, fanout)", b"{", b"}", b"(", b")", b";", b":", b",", b"[]",
    b"[4]", b"[0]", b"<", b">", b"#string", b"#aos", b"#soa", b"#bovoa", b"= 1", b"= -1", b"u8", b"u16", b"i64",
    b"f32", b"bool", b"char", b"option<", b"result<", b"_", b"own<", b"borrow<", b"\"", b"'", b"//", b"///", b"\n",
    b"-", b"18446744073709551616", b"1e308", b"@", b"memory (import: write, export: read, 1)", b"fn", b"->",
    b"x: ", b"point", "\u{10ffff}".as_bytes(),
];

pub fn run(data: &[u8]) {
    if let Ok(source) = std::str::from_utf8(data) {
        check(source);
    }
}

pub fn check(source: &str) {
    let file = match karmem_idl::parse(source) {
        Ok(file) => file,
        Err(error) => {
            let _ = karmem_idl::Diagnostics::new(vec![error], "fuzz.km", source).to_report();
            return;
        }
    };
    let printed = karmem_idl::print(&file);
    let reparsed = match karmem_idl::parse(&printed) {
        Ok(file) => file,
        Err(error) => panic!(
            "the printed form does not parse: {}\n--- input\n{source}\n--- printed\n{printed}",
            karmem_idl::Diagnostics::new(vec![error], "printed.km", &printed).to_report()
        ),
    };
    let reprinted = karmem_idl::print(&reparsed);
    assert!(reprinted == printed, "fmt is not idempotent\n--- input\n{source}\n--- printed\n{printed}\n--- reprinted\n{reprinted}");

    match (karmem_idl::resolve(file), karmem_idl::resolve(reparsed)) {
        (Ok(original), Ok(formatted)) => {
            let changes = karmem_idl::compat::compare(&original, &formatted);
            assert!(changes.is_empty(), "formatting changed the schema: {changes:?}\n--- input\n{source}\n--- printed\n{printed}");
        }
        (Err(errors), Err(_)) => {
            let _ = karmem_idl::Diagnostics::new(errors, "fuzz.km", source).to_report();
        }
        (Ok(_), Err(errors)) => panic!(
            "the input resolves but its printed form does not: {}\n--- input\n{source}\n--- printed\n{printed}",
            karmem_idl::Diagnostics::new(errors, "printed.km", &printed).to_report()
        ),
        (Err(errors), Ok(_)) => panic!(
            "the printed form resolves but the input does not: {}\n--- input\n{source}\n--- printed\n{printed}",
            karmem_idl::Diagnostics::new(errors, "fuzz.km", source).to_report()
        ),
    }
}
