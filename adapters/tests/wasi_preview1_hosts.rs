//! The preview2 shim, linked into a module that imports WASI 0.2 like a
//! `wasm32-wasip2` main module, runs the same on three preview1 hosts:
//! same stdout, stderr, files and exit code on wasmtime (component model off),
//! wasmi and node. The expected stdout is a snapshot beside the guest
//! (`tests/wasi/p2_guest.stdout`; `BLESS=1` rewrites it).

#[path = "wasi/hosts.rs"]
mod hosts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use hosts::{Invocation, Outcome};
use karmem_adapters::wasi::{
    WasiMode, add_command_start_to_bytes, link_preview2_shim, preview2_shim, recognize_preview1_adapter,
};
use wasmparser::{Parser, Payload, TypeRef};

fn case_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wasi")
}

/// The guest, linked with the shim and given a `_start`.
fn lowered_guest() -> Result<Vec<u8>> {
    let guest = wat::parse_file(case_dir().join("p2_guest.wat"))?;
    let (linked, report) = link_preview2_shim(&guest, WasiMode::Shim)?;
    ensure!(report.shimmed.len() == 42, "expected all 42 WASI 0.2 imports shimmed, got {:?}", report.shimmed);
    add_command_start_to_bytes(&linked)
}

fn invocation() -> Invocation {
    Invocation {
        args: ["guest.wasm", "one", "two"].map(String::from).to_vec(),
        env: vec![("GREETING".to_string(), "bonjour".to_string())],
        files: Vec::new(),
    }
}

fn imports_of(wasm: &[u8]) -> Result<Vec<(String, String, bool)>> {
    let mut imports = Vec::new();
    for payload in Parser::new(0).parse_all(wasm) {
        if let Payload::ImportSection(section) = payload? {
            for import in section.into_imports() {
                let import = import?;
                imports.push((import.module.to_string(), import.name.to_string(), matches!(import.ty, TypeRef::Func(_))));
            }
        }
    }
    Ok(imports)
}

fn check_snapshot(name: &str, actual: &str) -> Result<()> {
    let path = case_dir().join(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, actual)?;
        return Ok(());
    }
    let expected = std::fs::read_to_string(&path).with_context(|| format!("missing snapshot {}", path.display()))?;
    assert_eq!(actual, expected, "stdout differs from {}", path.display());
    Ok(())
}

#[test]
fn linked_guest_imports_only_preview1() -> Result<()> {
    let wasm = lowered_guest()?;
    let imports = imports_of(&wasm)?;
    for (module, name, _) in &imports {
        assert_eq!(module, "wasi_snapshot_preview1", "unexpected import `{module}#{name}`");
    }
    // Only what the guest reaches: no symlinks, links or renames.
    let names: Vec<&str> = imports.iter().map(|(_, name, _)| name.as_str()).collect();
    assert!(names.contains(&"path_open") && names.contains(&"fd_readdir") && names.contains(&"proc_exit"));
    assert!(!names.contains(&"path_symlink") && !names.contains(&"path_rename"), "{names:?}");
    // Deterministic: the same input links to the same bytes.
    assert_eq!(lowered_guest()?, wasm);
    Ok(())
}

/// Handles are checked: a stale handle, one of the wrong kind, or 0 traps.
#[test]
fn handle_misuse_traps() -> Result<()> {
    for misuse in [
        "(call $drop (local.get $h)) (call $drop (local.get $h))",
        "(call $drop_pollable (local.get $h))",
        "(call $drop (i32.const 0))",
        "(call $drop (i32.const 4000))",
    ] {
        let guest = wat::parse_str(format!(
            r#"(module
                (import "wasi:cli/stdout@0.2.0" "get-stdout" (func $stdout (result i32)))
                (import "wasi:io/streams@0.2.0" "[resource-drop]output-stream" (func $drop (param i32)))
                (import "wasi:io/poll@0.2.0" "[resource-drop]pollable" (func $drop_pollable (param i32)))
                (memory (export "memory") 1)
                (func (export "wasi:cli/run@0.2.0#run") (result i32)
                  (local $h i32)
                  (local.set $h (call $stdout))
                  {misuse}
                  (i32.const 0)))"#
        ))?;
        let (linked, _) = link_preview2_shim(&guest, WasiMode::Shim)?;
        let wasm = add_command_start_to_bytes(&linked)?;
        assert_eq!(hosts::run_wasmtime(&wasm, &invocation())?.exit_code, None, "`{misuse}` must trap");
        assert_eq!(hosts::run_wasmi(&wasm, &invocation())?.exit_code, None, "`{misuse}` must trap on wasmi");
    }
    Ok(())
}

#[test]
fn run_and_start_together_are_refused() -> Result<()> {
    let module = wat::parse_str(
        r#"(module
            (func (export "wasi:cli/run@0.2.0#run") (result i32) i32.const 0)
            (func (export "_start")))"#,
    )?;
    let error = add_command_start_to_bytes(&module).err().context("both exports must be refused")?;
    assert!(format!("{error:#}").contains("`_start`"), "{error:#}");
    let wrong_type = wat::parse_str(r#"(module (func (export "wasi:cli/run@0.2.0#run")))"#)?;
    assert!(add_command_start_to_bytes(&wrong_type).is_err());
    // A reactor (no `run`) is left alone.
    let reactor = wat::parse_str(r#"(module (func (export "f")))"#)?;
    assert!(!imports_of(&add_command_start_to_bytes(&reactor)?)?.iter().any(|(_, name, _)| name == "proc_exit"));
    Ok(())
}

#[test]
fn same_results_on_three_preview1_hosts() -> Result<()> {
    let wasm = lowered_guest()?;
    let invocation = invocation();
    let expected_files: BTreeMap<String, Vec<u8>> =
        [("keep.txt".to_string(), b"kept\nappended\n".to_vec()), ("zeros.bin".to_string(), vec![0, 0, 0])]
            .into_iter()
            .collect();

    let wasmtime = hosts::run_wasmtime(&wasm, &invocation)?;
    assert_eq!(wasmtime.stderr, "to stderr\n");
    check_snapshot("p2_guest.stdout", &wasmtime.stdout)?;
    assert_eq!(wasmtime.exit_code, Some(1), "the guest ends with `exit(err)`");
    assert_eq!(wasmtime.files, expected_files);

    let wasmi = hosts::run_wasmi(&wasm, &invocation)?;
    assert_eq!(wasmi, wasmtime, "wasmi differs from wasmtime");

    match hosts::run_node(&wasm, &invocation)? {
        Some(node) => assert_eq!(node, wasmtime, "node differs from wasmtime"),
        None => eprintln!("node is not installed: the node host was skipped"),
    }

    // The script checks by itself too, as a user would run it.
    let snapshot = case_dir().join("p2_guest.stdout");
    assert_ne!(hosts::node_check(&wasm, &invocation, &snapshot, 1)?, Some(false), "node-wasi-check.mjs reported a difference");
    assert_ne!(hosts::node_check(&wasm, &invocation, &snapshot, 0)?, Some(true), "a wrong exit code must be reported");
    Ok(())
}

/// A command whose `run` returns `ok` or `err` without calling `exit`. It
/// exports no `cabi_realloc`: none of its imports returns a list.
fn returning_command(result: i32) -> Result<Vec<u8>> {
    let guest = wat::parse_str(format!(
        r#"(module
            (import "wasi:cli/stdout@0.2.3" "get-stdout" (func $stdout (result i32)))
            (import "wasi:io/streams@0.2.3" "[method]output-stream.blocking-write-and-flush"
              (func $write (param i32 i32 i32 i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) "bye\n")
            (func (export "wasi:cli/run@0.2.3#run") (result i32)
              (call $write (call $stdout) (i32.const 16) (i32.const 4) (i32.const 32))
              (i32.const {result})))"#
    ))?;
    let (linked, _) = link_preview2_shim(&guest, WasiMode::Shim)?;
    add_command_start_to_bytes(&linked)
}

#[test]
fn run_result_becomes_the_exit_code() -> Result<()> {
    for (result, code) in [(0, 0), (1, 1)] {
        let wasm = returning_command(result)?;
        let expected = Outcome {
            stdout: "bye\n".into(),
            stderr: String::new(),
            exit_code: Some(code),
            files: BTreeMap::new(),
            transcript: Vec::new(),
        };
        assert_eq!(hosts::run_wasmtime(&wasm, &invocation())?, expected, "wasmtime, run -> {result}");
        assert_eq!(hosts::run_wasmi(&wasm, &invocation())?, expected, "wasmi, run -> {result}");
        if let Some(node) = hosts::run_node(&wasm, &invocation())? {
            assert_eq!(node, expected, "node, run -> {result}");
        }
    }
    Ok(())
}

#[test]
fn uncovered_interfaces_follow_the_mode() -> Result<()> {
    let guest = wat::parse_str(
        r#"(module
            (import "wasi:cli/stdout@0.2.0" "get-stdout" (func (result i32)))
            (import "wasi:sockets/tcp@0.2.0" "[method]tcp-socket.start-listen" (func (param i32 i32)))
            (memory (export "memory") 1)
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) unreachable))"#,
    )?;
    let denied = link_preview2_shim(&guest, WasiMode::Deny).err().context("deny must refuse sockets")?;
    assert!(format!("{denied:#}").contains("`wasi:sockets/tcp`"), "{denied:#}");
    assert!(link_preview2_shim(&guest, WasiMode::Shim).is_err());
    let (kept, report) = link_preview2_shim(&guest, WasiMode::Passthrough)?;
    assert_eq!(report.passed_through, vec!["wasi:sockets/tcp@0.2.0#[method]tcp-socket.start-listen".to_string()]);
    let imports = imports_of(&kept)?;
    assert!(imports.iter().any(|(module, _, _)| module == "wasi:sockets/tcp@0.2.0"));
    assert!(!imports.iter().any(|(module, _, _)| module == "wasi:cli/stdout@0.2.0"));
    Ok(())
}

#[test]
fn shim_owns_no_memory_data_table_or_start() -> Result<()> {
    for payload in Parser::new(0).parse_all(preview2_shim()?) {
        match payload? {
            Payload::DataSection(_) | Payload::MemorySection(_) | Payload::TableSection(_) => {
                panic!("the shim must not own data, memory or tables")
            }
            Payload::StartSection { .. } => panic!("the shim must not have a start function"),
            _ => {}
        }
    }
    let imports = imports_of(preview2_shim()?)?;
    assert!(imports.contains(&("__main_module__".to_string(), "memory".to_string(), false)));
    assert!(imports.contains(&("__main_module__".to_string(), "cabi_realloc".to_string(), true)));
    Ok(())
}

#[test]
fn preview1_adapter_is_recognised_by_structure() -> Result<()> {
    // Shaped like wit-component's adapter: imports the main memory and a
    // realloc, exports preview1 functions (and, for commands, `run`).
    let adapter = wat::parse_str(
        r#"(module
            (import "env" "memory" (memory 0))
            (import "__main_module__" "cabi_realloc" (func (param i32 i32 i32 i32) (result i32)))
            (import "__main_module__" "_start" (func))
            (func (export "fd_write") (param i32 i32 i32 i32) (result i32) i32.const 0)
            (func (export "proc_exit") (param i32))
            (func (export "wasi:cli/run@0.2.6#run") (result i32) i32.const 0)
            (func (export "cabi_import_realloc") (param i32 i32 i32 i32) (result i32) i32.const 0))"#,
    )?;
    let found = recognize_preview1_adapter(&adapter)?.context("the adapter was not recognised")?;
    assert_eq!(found.preview1_exports, vec!["fd_write".to_string(), "proc_exit".to_string()]);
    assert_eq!(found.run_export.as_deref(), Some("wasi:cli/run@0.2.6#run"));
    assert_eq!(found.other_exports, vec!["cabi_import_realloc".to_string()]);
    assert!(found.imports_realloc);

    // The shim imports memory and realloc too, but exports no preview1 names.
    assert_eq!(recognize_preview1_adapter(preview2_shim()?)?, None);
    // A main module defines its memory.
    assert_eq!(recognize_preview1_adapter(&wat::parse_file(case_dir().join("p2_guest.wat"))?)?, None);
    Ok(())
}


/// Imports whose `canon lower` name different reallocs get shim copies bound
/// to each, sharing one handle table: a stream from one copy works in the other.
#[test]
fn each_import_allocates_through_its_own_realloc() -> Result<()> {
    let guest = wat::parse_str(
        r#"(module
            (import "wasi:cli/stdout@0.2.0" "get-stdout" (func $stdout (result i32)))
            (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush"
              (func $write (param i32 i32 i32 i32)))
            (import "wasi:cli/environment@0.2.0" "get-arguments" (func $args (param i32)))
            (memory (export "memory") 1)
            (global $main_heap (mut i32) (i32.const 1024))
            (global $other_heap (mut i32) (i32.const 32768))
            (data (i32.const 16) "main\n")
            (data (i32.const 24) "other\n")
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
              (global.get $main_heap)
              (global.set $main_heap (i32.add (global.get $main_heap) (local.get 3))))
            (func (export "other_realloc") (param i32 i32 i32 i32) (result i32)
              (global.get $other_heap)
              (global.set $other_heap (i32.add (global.get $other_heap) (local.get 3))))
            (func (export "wasi:cli/run@0.2.0#run") (result i32)
              (local $out i32)
              (local.set $out (call $stdout))
              (call $args (i32.const 64))
              ;; the list (and its strings) came from `other_realloc`
              (if (i32.ge_u (i32.load (i32.const 64)) (i32.const 32768))
                (then (call $write (local.get $out) (i32.const 24) (i32.const 6) (i32.const 80)))
                (else (call $write (local.get $out) (i32.const 16) (i32.const 5) (i32.const 80))))
              (i32.const 0)))"#,
    )?;
    let realloc_of = |_: &str, field: &str| {
        if field == "get-arguments" { "other_realloc".to_string() } else { "cabi_realloc".to_string() }
    };
    let (linked, _) = karmem_adapters::wasi::link_preview2_shim_with(&guest, WasiMode::Shim, &realloc_of)?;
    let wasm = add_command_start_to_bytes(&linked)?;
    let outcome = hosts::run_wasmtime(&wasm, &invocation())?;
    assert_eq!((outcome.stdout.as_str(), outcome.exit_code), ("other\n", Some(0)), "{outcome:?}");
    assert_eq!(hosts::run_wasmi(&wasm, &invocation())?, outcome);
    Ok(())
}

#[test]
fn exit_with_code_reaches_the_host() -> Result<()> {
    let guest = wat::parse_str(
        r#"(module
            (import "wasi:cli/exit@0.2.6" "exit-with-code" (func $exit (param i32)))
            (memory (export "memory") 1)
            (func (export "wasi:cli/run@0.2.6#run") (result i32)
              (call $exit (i32.const 7))
              unreachable))"#,
    )?;
    let (linked, _) = link_preview2_shim(&guest, WasiMode::Shim)?;
    let wasm = add_command_start_to_bytes(&linked)?;
    let outcome = hosts::run_wasmtime(&wasm, &invocation())?;
    assert_eq!(outcome.exit_code, Some(7));
    assert_eq!(hosts::run_wasmi(&wasm, &invocation())?, outcome);
    if let Some(node) = hosts::run_node(&wasm, &invocation())? {
        assert_eq!(node, outcome);
    }
    Ok(())
}
