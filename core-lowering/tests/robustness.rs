//! Bad input never panics: truncated and corrupted components give errors.
//! Also the refusals that need no fixture folder.

use anyhow::Result;
use karmem_core_lowering::{Abi, Options, inspect, lower};

fn small_components() -> Result<Vec<Vec<u8>>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/lowering");
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    dirs.sort();
    for dir in dirs {
        let wat = dir.join("component.wat");
        if wat.exists() {
            out.push(wat::parse_file(&wat)?);
        }
    }
    Ok(out)
}

#[test]
fn truncated_and_corrupted_inputs_do_not_panic() -> Result<()> {
    let mut tried = 0;
    for bytes in small_components()? {
        for cut in (0..bytes.len()).step_by(7) {
            let _ = lower(bytes.get(..cut).unwrap_or_default(), &Options::default());
            let _ = inspect::inspect(bytes.get(..cut).unwrap_or_default());
            tried += 1;
        }
        // A simple deterministic byte-flipping walk over the body.
        let mut state: u32 = 0x9e37_79b9;
        for _ in 0..200 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let mut corrupted = bytes.clone();
            let at = 8 + (state as usize) % corrupted.len().saturating_sub(8).max(1);
            if let Some(b) = corrupted.get_mut(at) {
                *b ^= (state >> 24) as u8 | 1;
            }
            let _ = lower(&corrupted, &Options::default());
            tried += 1;
        }
    }
    assert!(tried > 1000, "too few inputs tried: {tried}");
    Ok(())
}

#[test]
fn core_modules_and_garbage_are_refused() {
    let module = wat::parse_str("(module)").unwrap_or_default();
    let e = lower(&module, &Options::default()).err().map(|e| format!("{e:#}"));
    assert_eq!(e.as_deref(), Some("the input is a core module, not a component"));
    let e = lower(b"not wasm at all", &Options::default()).err().map(|e| format!("{e:#}"));
    assert_eq!(
        e.as_deref(),
        Some("the input is not a WebAssembly component: no `\\0asm` magic number (byte 0 differs)")
    );
}

#[test]
fn the_karmem_abi_is_refused_until_the_adapters_land() {
    let component = wat::parse_str("(component)").unwrap_or_default();
    let options = Options { abi: Abi::Karmem, ..Options::default() };
    let e = lower(&component, &options).err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(e.contains("`--abi karmem` is not implemented yet"), "{e}");
}

#[test]
fn an_empty_component_lowers_to_an_empty_module_with_the_sections() -> Result<()> {
    let component = wat::parse_str("(component)")?;
    let options = Options { idl: Some("package demo;\n".to_string()), ..Options::default() };
    let lowered = lower(&component, &options)?;
    let summary = inspect::lowered_module(&lowered)?;
    assert!(summary.exports.is_empty() && summary.imports.is_empty());
    assert_eq!(summary.idl.as_deref(), Some("package demo;\n"));
    assert!(summary.custom_sections.iter().any(|s| s == "producers"));
    Ok(())
}

/// Errors about the outer structure say where it goes wrong.
#[test]
fn header_and_section_errors_name_an_offset() -> Result<()> {
    let lower_error = |bytes: &[u8]| match lower(bytes, &Options::default()) {
        Ok(_) => String::from("lowered"),
        Err(e) => format!("{e:#}"),
    };
    // A component header cut after six bytes.
    let e = lower_error(b"\0asm\x0d\x00");
    assert!(e.contains("ends at byte 6, inside the 8-byte header"), "{e}");
    // The magic number and nothing else.
    let e = lower_error(b"\0asm");
    assert!(e.contains("ends at byte 4"), "{e}");
    let e = lower_error(b"\0asx\x0d\x00\x01\x00");
    assert!(e.contains("byte 3 differs"), "{e}");
    let e = lower_error(b"\0asm\x0d\x00\x02\x00");
    assert!(e.contains("`0d 00 02 00` at offset 4"), "{e}");
    // A module section whose size runs past the end of the input.
    let e = lower_error(b"\0asm\x0d\x00\x01\x00\x01\xff\xff\x03\0asm\x01\x00\x00\x00");
    assert!(e.contains("at offset 12 claims bytes 12.."), "{e}");
    assert!(e.contains("past the end of the 20-byte input"), "{e}");
    Ok(())
}

/// A parameter of fixed-size lists of fixed-size lists stands for 2^32 flat
/// values. The lowering only needs to know that it is more than
/// `MAX_FLAT_PARAMS`; it once pushed every flat value (a minute and 4 GiB,
/// an abort under a 2 GB limit; docs/HARDENING.md §6). The parameter goes
/// through memory: the lifted core function takes one pointer.
#[test]
fn a_parameter_of_four_billion_flat_values_goes_through_memory() -> Result<()> {
    let bytes = wat::parse_str(
        r#"(component
          (core module $m
            (memory (export "memory") 1)
            (func (export "realloc") (param i32 i32 i32 i32) (result i32) i32.const 0)
            (func (export "f") (param i32)))
          (core instance $i (instantiate $m))
          (type $inner (list u8 65536))
          (type $big (list $inner 65536))
          (func (export "f") (param "x" $big)
            (canon lift (core func $i "f") (memory $i "memory") (realloc (func $i "realloc")))))"#,
    )?;
    let lowered = lower(&bytes, &Options { abi: Abi::Canonical, ..Options::default() })?;
    let printed = karmem_core_lowering::to_wat(&lowered)?;
    anyhow::ensure!(printed.contains("(export \"f\""), "the export is kept:\n{printed}");
    anyhow::ensure!(printed.contains("(param i32)"), "the parameter passes by pointer:\n{printed}");
    Ok(())
}
