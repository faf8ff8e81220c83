//! Recognises the preview1 adapter module inside a `wasm32-wasip1` component.
//!
//! Owns: the structural test. wit-component renames the adapter's imports
//! and exports between versions and garbage-collects what the main module
//! does not use, so the test looks at shape, never at a module name: the
//! adapter imports one memory and defines none, and exports functions named
//! like preview1 functions, and is not a shared library (no `dylink.0`
//! section, no `GOT.*` imports: componentize-py's `libc.so` has the rest of
//! that shape). It imports the main module's `cabi_realloc`
//! (a function `(i32, i32, i32, i32) -> i32`) only when the main module has
//! one: a plain wasip1 command has none, and its adapter takes its state
//! with `memory.grow` instead.
//!
//! Does not own: dropping the adapter and re-exposing the main module's
//! `wasi_snapshot_preview1` imports (`karmem-core-lowering`, in `--wasi preview1`).

use anyhow::{Context, Result};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef, ValType};

use super::is_compatible_version;

/// Every function of `wasi_snapshot_preview1`.
pub const PREVIEW1_FUNCTIONS: &[&str] = &[
    "args_get", "args_sizes_get", "environ_get", "environ_sizes_get", "clock_res_get", "clock_time_get",
    "fd_advise", "fd_allocate", "fd_close", "fd_datasync", "fd_fdstat_get", "fd_fdstat_set_flags",
    "fd_fdstat_set_rights", "fd_filestat_get", "fd_filestat_set_size", "fd_filestat_set_times", "fd_pread",
    "fd_prestat_get", "fd_prestat_dir_name", "fd_pwrite", "fd_read", "fd_readdir", "fd_renumber", "fd_seek",
    "fd_sync", "fd_tell", "fd_write", "path_create_directory", "path_filestat_get", "path_filestat_set_times",
    "path_link", "path_open", "path_readlink", "path_remove_directory", "path_rename", "path_symlink",
    "path_unlink_file", "poll_oneoff", "proc_exit", "proc_raise", "sched_yield", "random_get", "sock_accept",
    "sock_recv", "sock_send", "sock_shutdown",
];

/// What the lowering needs to know of a recognised adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preview1Adapter {
    /// Exports named like preview1 functions: the main module's
    /// `wasi_snapshot_preview1` imports they satisfy become imports of the output.
    pub preview1_exports: Vec<String>,
    /// The adapter's `wasi:cli/run@0.2.x#run` export (command adapter): the
    /// lowering exports the main module's `_start` instead.
    pub run_export: Option<String>,
    /// Other exports (`cabi_import_realloc`, `adapter_*`, ...): if the
    /// component uses one of them elsewhere, dropping the adapter is refused.
    pub other_exports: Vec<String>,
    /// Whether it imports a `cabi_realloc`-shaped function (the main module's).
    pub imports_realloc: bool,
}

/// `Some` when `module` has the preview1 adapter's structure.
pub fn recognize_preview1_adapter(module: &[u8]) -> Result<Option<Preview1Adapter>> {
    let mut func_types: Vec<(Vec<ValType>, Vec<ValType>)> = Vec::new();
    let mut imported_memories = 0u32;
    let mut defined_memories = 0u32;
    // A shared library (wasi-libc's `libc.so` in a dynamically linked
    // component: one imported memory, and `sched_yield` or `clock_*` among
    // its exports) is never the adapter.
    let mut shared_library = false;
    let mut adapter = Preview1Adapter {
        preview1_exports: Vec::new(),
        run_export: None,
        other_exports: Vec::new(),
        imports_realloc: false,
    };
    for payload in Parser::new(0).parse_all(module) {
        match payload.context("failed to parse a core module while looking for the preview1 adapter")? {
            Payload::TypeSection(section) => {
                for group in section {
                    for sub in group?.into_types() {
                        match sub.composite_type.inner {
                            wasmparser::CompositeInnerType::Func(func) => {
                                func_types.push((func.params().to_vec(), func.results().to_vec()))
                            }
                            _ => func_types.push((Vec::new(), Vec::new())),
                        }
                    }
                }
            }
            Payload::CustomSection(section) if section.name() == "dylink.0" => shared_library = true,
            Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import?;
                    shared_library |= import.module.starts_with("GOT.");
                    match import.ty {
                        TypeRef::Memory(_) => imported_memories += 1,
                        TypeRef::Func(type_index) => {
                            let realloc_shape = (vec![ValType::I32; 4], vec![ValType::I32]);
                            if func_types.get(type_index as usize) == Some(&realloc_shape) {
                                adapter.imports_realloc = true;
                            }
                        }
                        _ => {}
                    }
                }
            }
            Payload::MemorySection(section) => defined_memories += section.count(),
            Payload::ExportSection(section) => {
                for export in section {
                    let export = export?;
                    if export.kind != ExternalKind::Func {
                        continue;
                    }
                    if PREVIEW1_FUNCTIONS.contains(&export.name) {
                        adapter.preview1_exports.push(export.name.to_string());
                    } else if is_cli_run(export.name) {
                        adapter.run_export = Some(export.name.to_string());
                    } else {
                        adapter.other_exports.push(export.name.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    let shaped = imported_memories == 1 && defined_memories == 0 && !shared_library;
    Ok((shaped && !adapter.preview1_exports.is_empty()).then_some(adapter))
}

/// `wasi:cli/run@0.2.x#run`
pub(crate) fn is_cli_run(name: &str) -> bool {
    name.strip_suffix("#run")
        .and_then(|interface| interface.strip_prefix("wasi:cli/run@"))
        .is_some_and(is_compatible_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The adapter's shape: one imported memory, none defined, preview1 exports.
    const SHAPED: &str = r#"(module
        (import "env" "memory" (memory 0))
        (func (export "sched_yield") (result i32) i32.const 0)
        (func (export "clock_time_get") (param i32 i64 i32) (result i32) i32.const 0))"#;

    #[test]
    fn shared_libraries_are_not_the_adapter() -> Result<()> {
        assert!(recognize_preview1_adapter(&wat::parse_str(SHAPED)?)?.is_some());
        // wasi-libc's `libc.so` in a dynamically linked component (componentize-py).
        let dylink = SHAPED.replace("(module", r#"(module (@custom "dylink.0" "")"#);
        assert!(recognize_preview1_adapter(&wat::parse_str(&dylink)?)?.is_none());
        let got = SHAPED.replace(
            r#"(import "env" "memory" (memory 0))"#,
            r#"(import "env" "memory" (memory 0)) (import "GOT.mem" "errno" (global (mut i32)))"#,
        );
        assert!(recognize_preview1_adapter(&wat::parse_str(&got)?)?.is_none());
        Ok(())
    }
}
