//! `karmem_bridge::lower`, the library form of `karmem-bridge lower`: a
//! build script gets the same module as the CLI, an overlay of patterns and
//! shared memories reaches the embedded `karmem:idl` and the adapters, and
//! `--multi-memory` gives the Karmem edge its own memory.

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed step fails the test")]

use std::path::{Path, PathBuf};
use std::process::Command;

use karmem_bridge::lower::{Abi, LowerOptions, Wasi};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures").join(path)
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_karmem-bridge")).args(args).output().expect("karmem-bridge runs")
}

fn custom_section(module: &[u8], name: &str) -> Option<Vec<u8>> {
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::CustomSection(section) = payload.expect("the module parses")
            && section.name() == name
        {
            return Some(section.data().to_vec());
        }
    }
    None
}

fn exports(module: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::ExportSection(section) = payload.expect("the module parses") {
            names.extend(section.into_iter().map(|e| e.expect("an export").name.to_string()));
        }
    }
    names
}

#[test]
fn the_library_writes_what_the_cli_writes() {
    let dir = tempfile::tempdir().unwrap();
    for (component, flags) in [
        ("components/basics.p2.wasm", &[][..]),
        ("components/basics.p1-reactor.wasm", &[][..]),
        ("components/types.p2.wasm", &["--abi", "canonical"][..]),
    ] {
        let out = dir.path().join("out.wasm");
        let input = fixture(component);
        let mut args = vec!["lower", input.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend(flags);
        let run = cli(&args);
        assert!(run.status.success(), "{component}: {}", String::from_utf8_lossy(&run.stderr));
        let options = LowerOptions {
            abi: if flags.is_empty() { Abi::Karmem } else { Abi::Canonical },
            ..LowerOptions::default()
        };
        let lowered = karmem_bridge::lower(&std::fs::read(fixture(component)).unwrap(), &options).unwrap();
        assert!(lowered.module == std::fs::read(&out).unwrap(), "{component}: the library and the CLI differ");
        let expected = if component.contains("p1-reactor") { Wasi::Preview1 } else { Wasi::Shim };
        assert_eq!(lowered.wasi, expected, "{component}");
        assert!(lowered.warnings.is_empty(), "{component}: {:?}", lowered.warnings);
    }
}

#[test]
fn an_overlay_reaches_the_embedded_idl_and_the_adapters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("counter.wasm");
    let counter = fixture("components/linked/counter.core.wasm");
    let run = cli(&[
        "lower",
        counter.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--pattern",
        "counter=fanout",
        "--memory",
        "counter.input=import:write,export:read,4",
        "--place",
        "counter.checksum.data=input",
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let module = std::fs::read(&out).unwrap();
    let idl = String::from_utf8(custom_section(&module, "karmem:idl").expect("a karmem:idl section")).unwrap();
    assert!(idl.contains("fanout"), "the pattern is embedded:\n{idl}");
    assert!(idl.contains("input"), "the memory is embedded:\n{idl}");
    // the same through an overlay file, and through the library
    let file = dir.path().join("counter.overlay");
    std::fs::write(
        &file,
        "pattern counter=fanout\nmemory counter.input=import:write,export:read,4\nplace counter.checksum.data=input\n",
    )
    .unwrap();
    let out2 = dir.path().join("counter2.wasm");
    let run = cli(&["lower", counter.to_str().unwrap(), "-o", out2.to_str().unwrap(), "--overlay", file.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(std::fs::read(&out2).unwrap() == module, "the overlay file and the flags give the same module");
    let overlay = karmem_wit_import::Overlay::parse_file(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let lowered = karmem_bridge::lower(&std::fs::read(&counter).unwrap(), &LowerOptions { overlay, ..LowerOptions::default() })
        .unwrap();
    assert!(lowered.module == module, "the library and the CLI differ");
}

#[test]
fn a_bad_overlay_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wasm");
    let counter = fixture("components/linked/counter.core.wasm");
    let run = cli(&["lower", counter.to_str().unwrap(), "-o", out.to_str().unwrap(), "--pattern", "nope=fanout"]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("nope"), "the error names the interface: {stderr}");
    assert!(!out.exists(), "no output after a failure");
}

#[test]
fn multi_memory_gives_the_edge_its_own_memory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("composed.wasm");
    let composed = fixture("wat/composed.wat");
    // By default the instances' memories and the edge's are partitions of one.
    let one = cli(&["lower", composed.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(one.status.success(), "{}", String::from_utf8_lossy(&one.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let memories: u32 = wasmparser::Parser::new(0)
        .parse_all(&bytes)
        .filter_map(|p| match p.unwrap() {
            wasmparser::Payload::MemorySection(s) => Some(s.count()),
            _ => None,
        })
        .sum();
    assert_eq!(memories, 1);
    assert_eq!(exports(&bytes).iter().filter(|n| n.starts_with("memory") || *n == "KarmemMemory").count(), 1);
    let run = cli(&["lower", composed.to_str().unwrap(), "-o", out.to_str().unwrap(), "--multi-memory"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let names = exports(&std::fs::read(&out).unwrap());
    assert!(names.iter().any(|n| n == "KarmemMemory"), "exports: {names:?}");
    assert!(names.iter().any(|n| n == "memory"), "the guest memory stays exported: {names:?}");
}
