//! What the runtime needs to know about a core module before it lets shared
//! windows into its memory ([`ModuleFacts`]), and the rules that follow.
//!
//! The hazards are host-side writes (and reads) that wasmtime performs on a
//! module's behalf: active data segments are copied in by the host at
//! instantiation (`memory_init_cow` is off), and `memory.fill`, `memory.copy`
//! (above a small constant length) and `memory.init` run as host libcalls. A
//! fault in host code is not a wasm trap: aimed at a read-only or
//! inaccessible window it kills the process. So a module with such a window
//! must not contain those instructions (unless [`crate::bulk`] rewrote them
//! so that they trap cleanly) and must not place data segments on any window.
//!
//! Does not own: validation of the module itself (wasmtime does that when it
//! compiles).

use anyhow::{Context, Result, bail, ensure};
use wasmparser::{DataKind, Operator, Parser, Payload, TypeRef};

use crate::shared::MemoryLayout;

/// A bulk-memory instruction that wasmtime runs in host code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkSite {
    /// Index of the function (in the function index space) that contains it.
    pub function_index: u32,
    /// `memory.fill`, `memory.copy` or `memory.init`.
    pub instruction: &'static str,
}

/// Where an active data segment lands in memory 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentTarget {
    /// A constant byte range.
    Range { start: u64, end: u64 },
    /// The offset is computed from a global: unknown before instantiation.
    Dynamic,
}

/// Facts gathered in one pass over a module's bytes.
#[derive(Debug, Clone, Default)]
pub struct ModuleFacts {
    /// Memories the module defines.
    pub defined_memories: u32,
    /// Memories the module imports.
    pub imported_memories: u32,
    /// Active data segments targeting memory 0, in order.
    pub data_segments: Vec<SegmentTarget>,
    /// Every bulk-memory instruction that runs in host code, in code order.
    pub bulk_sites: Vec<BulkSite>,
}

impl ModuleFacts {
    /// Scans a binary module. Errors name the section that failed to parse.
    pub fn scan(bytes: &[u8]) -> Result<Self> {
        let mut facts = ModuleFacts::default();
        let mut imported_functions = 0u32;
        let mut next_defined_function = 0u32;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.context("failed to parse the module")? {
                Payload::ImportSection(section) => {
                    for import in section.into_imports() {
                        match import.context("failed to parse the import section")?.ty {
                            TypeRef::Func(_) | TypeRef::FuncExact(_) => imported_functions += 1,
                            TypeRef::Memory(_) => facts.imported_memories += 1,
                            _ => {}
                        }
                    }
                }
                Payload::MemorySection(section) => {
                    facts.defined_memories = section.count();
                }
                Payload::DataSection(section) => {
                    for data in section {
                        let data = data.context("failed to parse the data section")?;
                        if let DataKind::Active {
                            memory_index: 0,
                            offset_expr,
                        } = data.kind
                        {
                            let len = data.data.len() as u64;
                            let target = match constant_offset(&offset_expr)? {
                                Some(start) => SegmentTarget::Range {
                                    start,
                                    end: start.saturating_add(len),
                                },
                                None => SegmentTarget::Dynamic,
                            };
                            facts.data_segments.push(target);
                        }
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    let function_index = imported_functions + next_defined_function;
                    next_defined_function += 1;
                    let mut reader = body
                        .get_operators_reader()
                        .with_context(|| format!("failed to read function {function_index}"))?;
                    while !reader.eof() {
                        let op = reader
                            .read()
                            .with_context(|| format!("failed to read function {function_index}"))?;
                        let instruction = match op {
                            Operator::MemoryFill { .. } => "memory.fill",
                            Operator::MemoryCopy { .. } => "memory.copy",
                            Operator::MemoryInit { .. } => "memory.init",
                            _ => continue,
                        };
                        facts.bulk_sites.push(BulkSite {
                            function_index,
                            instruction,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(facts)
    }

    /// Checks that `layout` can be applied to this module's memory, either
    /// while it is created (`before_data_init`: data segments are copied in
    /// afterwards, by the host) or after instantiation.
    pub fn check_layout(&self, layout: &MemoryLayout, before_data_init: bool) -> Result<()> {
        if layout.is_empty() {
            return Ok(());
        }
        ensure!(
            self.imported_memories == 0,
            "shared memories need a module that defines its memory, but this one imports it"
        );
        ensure!(
            self.defined_memories == 1,
            "shared memories need a module with exactly one memory, but this one defines {}",
            self.defined_memories
        );
        if before_data_init {
            for (index, segment) in self.data_segments.iter().enumerate() {
                match segment {
                    SegmentTarget::Dynamic => bail!(
                        "data segment {index} has a non-constant offset, so it cannot be checked \
                         against the shared memories"
                    ),
                    SegmentTarget::Range { start, end } => {
                        if let Some(window) = layout
                            .placements()
                            .iter()
                            .find(|w| w.overlaps(*start, end - start))
                        {
                            bail!(
                                "data segment {index} ({start:#x}..{end:#x}) overlaps shared memory \
                                 `{}` ({:#x}..{:#x})",
                                window.region.name(),
                                window.offset,
                                window.end()
                            );
                        }
                    }
                }
            }
        }
        if layout.has_protected_window()
            && let Some(site) = self.bulk_sites.first()
        {
            bail!(
                "function {} uses `{}`, which wasmtime runs in host code; aimed at a read-only \
                 shared memory it would crash the host instead of trapping (load the module \
                 with `RuntimeConfig::rewrite_bulk_memory`)",
                site.function_index,
                site.instruction
            );
        }
        Ok(())
    }
}

/// The value of an `i32.const`/`i64.const` offset expression, or `None` for
/// anything computed (a `global.get`, extended constant expressions).
fn constant_offset(expr: &wasmparser::ConstExpr<'_>) -> Result<Option<u64>> {
    let mut reader = expr.get_operators_reader();
    let first = reader
        .read()
        .context("failed to read a data segment offset")?;
    let value = match first {
        // A negative i32 offset is a large unsigned one.
        Operator::I32Const { value } => u64::from(value as u32),
        Operator::I64Const { value } => value as u64,
        _ => return Ok(None),
    };
    match reader
        .read()
        .context("failed to read a data segment offset")?
    {
        Operator::End => Ok(Some(value)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::{Access, RegionPlacement, SharedRegion};

    fn scan(wat: &str) -> Result<ModuleFacts> {
        ModuleFacts::scan(&wat::parse_str(wat)?)
    }

    #[test]
    fn finds_bulk_sites_and_segments() -> Result<()> {
        let facts = scan(
            r#"(module
                (import "h" "f" (func))
                (memory 4)
                (data (i32.const 16) "abcd")
                (func (memory.fill (i32.const 0) (i32.const 0) (i32.const 8)))
                (func (memory.copy (i32.const 0) (i32.const 8) (i32.const 8))))"#,
        )?;
        assert_eq!(facts.defined_memories, 1);
        assert_eq!(
            facts.data_segments,
            vec![SegmentTarget::Range { start: 16, end: 20 }]
        );
        assert_eq!(
            facts.bulk_sites,
            vec![
                BulkSite {
                    function_index: 1,
                    instruction: "memory.fill"
                },
                BulkSite {
                    function_index: 2,
                    instruction: "memory.copy"
                },
            ]
        );
        Ok(())
    }

    #[test]
    fn layout_rules() -> Result<()> {
        let region = SharedRegion::new("m", 1)?;
        let read_only =
            MemoryLayout::new(vec![RegionPlacement::new(&region, 0x10000, Access::Read)])?;
        let writable = MemoryLayout::new(vec![RegionPlacement::new(
            &region,
            0x10000,
            Access::ReadWrite,
        )])?;

        let with_fill = scan(
            "(module (memory 4) (func (memory.fill (i32.const 0) (i32.const 0) (i32.const 1))))",
        )?;
        let err = with_fill
            .check_layout(&read_only, true)
            .err()
            .context("expected refusal")?;
        assert!(
            format!("{err}").contains("function 0 uses `memory.fill`"),
            "{err}"
        );
        with_fill.check_layout(&writable, true)?;

        let data_on_window = scan(r#"(module (memory 4) (data (i32.const 0x10010) "x"))"#)?;
        let err = data_on_window
            .check_layout(&writable, true)
            .err()
            .context("expected refusal")?;
        assert!(
            format!("{err}").contains("overlaps shared memory `m`"),
            "{err}"
        );
        data_on_window.check_layout(&writable, false)?;

        let imported = scan(r#"(module (import "env" "memory" (memory 4)))"#)?;
        assert!(imported.check_layout(&writable, true).is_err());
        imported.check_layout(&MemoryLayout::empty(), true)?;
        Ok(())
    }
}
