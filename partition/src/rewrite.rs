//! The pass: a multi-memory module in, the same module over one memory out.
//!
//! Owns: re-encoding every section with the new index spaces (the preview1
//! imports become wrappers over real imports; helpers and wrappers are
//! appended after the module's own functions; two globals per input
//! memory), rebasing data segments, and rewriting every memory instruction
//! of every function body:
//!
//! - a load or store of partition `k` with offset `o` and width `n`:
//!   `a + o < limit_k_n` (`bytes_k - n + 1`) is checked (unless `k` is the
//!   last partition) and the partition's base is added to the static
//!   offset, so the address operand is untouched. Each body keeps the
//!   limits it uses in locals, read on entry and after every call (the
//!   only way a memory grows), so checks in loops compare registers. The last partition ends where the
//!   memory ends, so the engine's own bounds check is the partition's and
//!   its accesses cost nothing extra;
//! - `memory.size` reads the partition's page count, `memory.grow`,
//!   `memory.fill` and `memory.copy` call helpers (`glue.rs`), `memory.init`
//!   checks and rebases its destination inline.
//!
//! Bodies are copied as raw bytes wherever an operator carries no index
//! and touches no memory. Atomic memory instructions are refused.
//!
//! Does not own: the layout (`layout.rs`), helper and wrapper bodies.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail, ensure};
use wasm_encoder::reencode::{Error as ReencodeError, Reencode};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, CustomSection, DataCountSection, DataSection, ElementSection, Encode,
    EntityType, ExportKind, ExportSection, Function, FunctionSection, GlobalSection, GlobalType, ImportSection,
    Instruction as I, MemorySection, MemoryType, Module, StartSection, TableSection, TagSection, TypeSection, ValType,
};
use wasmparser::{
    DataKind, ExternalKind, FunctionBody, MemArg, Operator, Parser, Payload, TypeRef, Validator, WasmFeatures,
};

use crate::glue::{self, Globals, Helper, HelperTypes, Helpers};
use crate::layout::Layout;
use crate::{PAGE, preview1, preview1_memory_of};

/// Rewrites `module` (valid, with the memories `layout` places) into a
/// module with one memory, exported as `memory`.
pub fn run(module: &[u8], layout: &Layout) -> Result<Vec<u8>> {
    let input = Input::parse(module)?;
    ensure!(
        input.memories == layout.partitions.len() as u32,
        "the layout places {} memories, the module has {}",
        layout.partitions.len(),
        input.memories
    );
    let main_memory = input
        .exports
        .iter()
        .find(|(name, kind, _)| name == "memory" && *kind == ExternalKind::Memory)
        .map(|(_, _, index)| *index);

    // Function index space: kept imports, real preview1 imports, the
    // module's functions, the wrappers, the helpers.
    let mut kept: Vec<(String, String, TypeRef)> = Vec::new();
    let mut wrapped: Vec<Wrapped> = Vec::new();
    let mut funcs: Vec<u32> = Vec::new();
    let mut func_imports = 0u32;
    for (module_name, field, ty) in &input.imports {
        let TypeRef::Func(type_index) = *ty else {
            kept.push((module_name.clone(), field.clone(), *ty));
            continue;
        };
        func_imports += 1;
        match preview1_memory_of(module_name) {
            Some(memory) => {
                let memory = match memory.or(main_memory) {
                    Some(m) => m,
                    None => bail!("`{module_name}` `{field}` points into the memory exported as `memory`, and there is none"),
                };
                let params = input.func_type(type_index)?.params().len();
                preview1::check(field, params)?;
                funcs.push(u32::MAX); // the wrapper's index, below
                wrapped.push(Wrapped { old: func_imports - 1, field: field.clone(), memory, type_index });
            }
            None => {
                funcs.push(kept.iter().filter(|(_, _, t)| matches!(t, TypeRef::Func(_))).count() as u32);
                kept.push((module_name.clone(), field.clone(), *ty));
            }
        }
    }
    let kept_funcs = kept.iter().filter(|(_, _, t)| matches!(t, TypeRef::Func(_))).count() as u32;
    // Real preview1 imports: one per field any wrapper calls.
    let mut real: BTreeMap<String, (u32, u32)> = BTreeMap::new(); // field -> (function index, type index)
    let (helper_types, helper_signatures) = HelperTypes::new(input.types);
    for w in &wrapped {
        if !real.contains_key(&w.field) {
            let index = kept_funcs + real.len() as u32;
            real.insert(w.field.clone(), (index, w.type_index));
        }
    }
    for w in &wrapped {
        if let Some(sizes) = preview1::also_needs(&w.field)
            && !real.contains_key(sizes)
        {
            let index = kept_funcs + real.len() as u32;
            real.insert(sizes.to_string(), (index, helper_types.two_to_one));
        }
    }
    // `real` numbered in insertion order above; re-number in map order so
    // the import section and the indices agree.
    let mut ordered: Vec<(String, u32)> = real.iter().map(|(field, (_, ty))| (field.clone(), *ty)).collect();
    ordered.sort();
    for (position, (field, _)) in ordered.iter().enumerate() {
        if let Some(entry) = real.get_mut(field) {
            entry.0 = kept_funcs + position as u32;
        }
    }
    let imported = kept_funcs + ordered.len() as u32;
    for defined in 0..input.defined_funcs.len() as u32 {
        funcs.push(imported + defined);
    }
    let wrappers_first = imported + input.defined_funcs.len() as u32;
    for (k, w) in wrapped.iter().enumerate() {
        if let Some(slot) = funcs.get_mut(w.old as usize) {
            *slot = wrappers_first + k as u32;
        }
    }
    let mut helpers = Helpers::new(wrappers_first + wrapped.len() as u32);
    let globals = Globals { first: input.globals };

    let mut remap = Remap { funcs };

    // Code.
    let mut code = CodeSection::new();
    for (body, type_index) in input.bodies.iter().zip(&input.defined_funcs) {
        let params = input.func_type(*type_index)?.params().len() as u32;
        let f = rewrite_body(&mut remap, module, body, params, layout, &globals, &mut helpers)
            .with_context(|| format!("failed to rewrite the function at offset {:#x}", body.range().start))?;
        code.function(&f);
    }
    let real_index = |field: &str| -> Result<u32> {
        real.get(field).map(|(index, _)| *index).with_context(|| format!("no real import of `{field}`"))
    };
    let mut wrapper_bodies = Vec::new();
    for w in &wrapped {
        let f = preview1::wrapper(&w.field, w.memory, layout, &mut helpers, &real_index)
            .with_context(|| format!("failed to wrap `wasi_snapshot_preview1` `{}`", w.field))?;
        wrapper_bodies.push(f);
    }
    for f in &wrapper_bodies {
        code.function(f);
    }
    let mut generated = 0;
    while let Some(helper) = helpers.list.get(generated).copied() {
        let f = glue::body(helper, layout, &globals, &mut helpers)?;
        code.function(&f);
        generated += 1;
    }

    // Sections, in order.
    let mut out = Module::new();
    let mut types = TypeSection::new();
    if let Some(section) = input.type_section.clone() {
        remap.parse_type_section(&mut types, section)?;
    }
    for (params, results) in helper_signatures {
        types.ty().function(params, results);
    }
    out.section(&types);

    let mut imports = ImportSection::new();
    for (module_name, field, ty) in &kept {
        let ty = match *ty {
            TypeRef::Func(t) => EntityType::Function(t),
            other => remap.entity_type(other)?,
        };
        imports.import(module_name, field, ty);
    }
    for (field, ty) in &ordered {
        imports.import(crate::PREVIEW1, field, EntityType::Function(*ty));
    }
    out.section(&imports);

    let mut functions = FunctionSection::new();
    for ty in &input.defined_funcs {
        functions.function(*ty);
    }
    for w in &wrapped {
        functions.function(w.type_index);
    }
    for helper in &helpers.list {
        functions.function(helper_types.of(*helper));
    }
    out.section(&functions);

    if let Some(section) = input.table_section.clone() {
        let mut tables = TableSection::new();
        remap.parse_table_section(&mut tables, section)?;
        out.section(&tables);
    }
    let mut memories = MemorySection::new();
    memories.memory(MemoryType {
        minimum: u64::from(layout.initial_pages()?),
        maximum: layout.maximum_pages()?.map(u64::from),
        memory64: false,
        shared: false,
        page_size_log2: None,
    });
    out.section(&memories);
    if let Some(section) = input.tag_section.clone() {
        let mut tags = TagSection::new();
        remap.parse_tag_section(&mut tags, section)?;
        out.section(&tags);
    }

    let mut global_section = GlobalSection::new();
    if let Some(section) = input.global_section.clone() {
        remap.parse_global_section(&mut global_section, section)?;
    }
    for p in &layout.partitions {
        let pages = p.initial_pages;
        let bytes = u64::from(pages) * PAGE;
        let mutable_i32 = GlobalType { val_type: ValType::I32, mutable: true, shared: false };
        global_section.global(mutable_i32, &ConstExpr::i32_const(pages as i32));
        global_section.global(
            GlobalType { val_type: ValType::I64, mutable: true, shared: false },
            &ConstExpr::i64_const(bytes as i64),
        );
        for width in glue::WIDTHS {
            global_section.global(mutable_i32, &ConstExpr::i32_const(glue::limit(bytes, width) as i32));
        }
    }
    out.section(&global_section);

    let mut exports = ExportSection::new();
    let mut memory_exported = false;
    for (name, kind, index) in &input.exports {
        match kind {
            ExternalKind::Memory => {
                if *index == layout.identity && !memory_exported {
                    exports.export("memory", ExportKind::Memory, 0);
                    memory_exported = true;
                }
            }
            ExternalKind::Func | ExternalKind::FuncExact => {
                exports.export(name, ExportKind::Func, remap.function_index(*index)?);
            }
            ExternalKind::Table => {
                exports.export(name, ExportKind::Table, *index);
            }
            ExternalKind::Global => {
                exports.export(name, ExportKind::Global, *index);
            }
            ExternalKind::Tag => {
                exports.export(name, ExportKind::Tag, *index);
            }
        }
    }
    if !memory_exported {
        exports.export("memory", ExportKind::Memory, 0);
    }
    out.section(&exports);

    if let Some(start) = input.start {
        out.section(&StartSection { function_index: remap.function_index(start)? });
    }
    if let Some(section) = input.element_section.clone() {
        let mut elements = ElementSection::new();
        remap.parse_element_section(&mut elements, section)?;
        out.section(&elements);
    }
    if let Some(count) = input.data_count {
        out.section(&DataCountSection { count });
    }
    out.section(&code);

    let mut data = DataSection::new();
    for (k, segment) in input.data.iter().enumerate() {
        match &segment.kind {
            DataKind::Passive => {
                data.passive(segment.data.iter().copied());
            }
            DataKind::Active { memory_index, offset_expr } => {
                let p = layout
                    .partition(*memory_index)
                    .with_context(|| format!("data segment {k} names memory {memory_index}, which has no partition"))?;
                let offset = input.const_u32(offset_expr).with_context(|| format!("data segment {k}"))?;
                let end = u64::from(offset) + segment.data.len() as u64;
                ensure!(
                    end <= u64::from(p.initial_pages) * PAGE,
                    "data segment {k} of `{}` ends at byte {end}, past its initial memory ({} pages): \
                     instantiating the original would trap",
                    p.owner,
                    p.initial_pages
                );
                let at = p.base() + u64::from(offset);
                data.active(0, &ConstExpr::i32_const(at as u32 as i32), segment.data.iter().copied());
            }
        }
    }
    if !input.data.is_empty() {
        out.section(&data);
    }
    // Names index functions, which moved; the owners are replaced by the
    // layout.
    for (name, bytes) in &input.customs {
        if name != "name" && name != crate::section::OWNERS_SECTION && name != crate::section::LAYOUT_SECTION {
            out.section(&CustomSection { name: name.as_str().into(), data: bytes.as_slice().into() });
        }
    }
    let text = layout.to_string();
    out.section(&CustomSection { name: crate::section::LAYOUT_SECTION.into(), data: text.as_bytes().into() });
    let bytes = out.finish();
    Validator::new_with_features(WasmFeatures::default())
        .validate_all(&bytes)
        .context("internal error: the partitioned module does not validate")?;
    Ok(bytes)
}

#[derive(Debug)]
struct Wrapped {
    old: u32,
    field: String,
    memory: u32,
    type_index: u32,
}

/// The sections of the input, as readers.
#[derive(Default)]
struct Input<'a> {
    types: u32,
    func_types: Vec<Option<wasmparser::FuncType>>,
    type_section: Option<wasmparser::TypeSectionReader<'a>>,
    imports: Vec<(String, String, TypeRef)>,
    defined_funcs: Vec<u32>,
    table_section: Option<wasmparser::TableSectionReader<'a>>,
    tag_section: Option<wasmparser::TagSectionReader<'a>>,
    memories: u32,
    globals: u32,
    global_inits: Vec<Option<i64>>,
    global_section: Option<wasmparser::GlobalSectionReader<'a>>,
    exports: Vec<(String, ExternalKind, u32)>,
    start: Option<u32>,
    element_section: Option<wasmparser::ElementSectionReader<'a>>,
    data_count: Option<u32>,
    bodies: Vec<FunctionBody<'a>>,
    data: Vec<wasmparser::Data<'a>>,
    customs: Vec<(String, Vec<u8>)>,
}

impl<'a> Input<'a> {
    fn parse(module: &'a [u8]) -> Result<Self> {
        let mut input = Input::default();
        for payload in Parser::new(0).parse_all(module) {
            match payload? {
                Payload::TypeSection(section) => {
                    input.type_section = Some(section.clone());
                    for group in section {
                        for sub in group?.into_types() {
                            input.types += 1;
                            input.func_types.push(match sub.composite_type.inner {
                                wasmparser::CompositeInnerType::Func(f) => Some(f),
                                _ => None,
                            });
                        }
                    }
                }
                Payload::ImportSection(section) => {
                    for import in section.into_imports() {
                        let import = import?;
                        match import.ty {
                            TypeRef::Memory(_) => bail!("imported memories cannot be partitioned"),
                            TypeRef::Global(_) => {
                                input.globals += 1;
                                input.global_inits.push(None);
                            }
                            _ => {}
                        }
                        input.imports.push((import.module.to_string(), import.name.to_string(), import.ty));
                    }
                }
                Payload::FunctionSection(section) => {
                    for ty in section {
                        input.defined_funcs.push(ty?);
                    }
                }
                Payload::TableSection(section) => input.table_section = Some(section),
                Payload::MemorySection(section) => input.memories += section.count(),
                Payload::TagSection(section) => input.tag_section = Some(section),
                Payload::GlobalSection(section) => {
                    input.global_section = Some(section.clone());
                    for global in section {
                        let global = global?;
                        input.globals += 1;
                        let value = if global.ty.mutable { None } else { eval(&global.init_expr, &input.global_inits) };
                        input.global_inits.push(value);
                    }
                }
                Payload::ExportSection(section) => {
                    for export in section {
                        let export = export?;
                        input.exports.push((export.name.to_string(), export.kind, export.index));
                    }
                }
                Payload::StartSection { func, .. } => input.start = Some(func),
                Payload::ElementSection(section) => input.element_section = Some(section),
                Payload::DataCountSection { count, .. } => input.data_count = Some(count),
                Payload::CodeSectionEntry(body) => input.bodies.push(body),
                Payload::DataSection(section) => {
                    for segment in section {
                        input.data.push(segment?);
                    }
                }
                Payload::CustomSection(section) => {
                    input.customs.push((section.name().to_string(), section.data().to_vec()));
                }
                _ => {}
            }
        }
        Ok(input)
    }

    fn func_type(&self, index: u32) -> Result<&wasmparser::FuncType> {
        self.func_types
            .get(index as usize)
            .and_then(Option::as_ref)
            .with_context(|| format!("type {index} is not a function type"))
    }

    /// A data segment offset as a constant.
    fn const_u32(&self, expr: &wasmparser::ConstExpr<'_>) -> Result<u32> {
        eval(expr, &self.global_inits)
            .map(|v| v as u32)
            .context("its offset is not a constant expression this pass can evaluate")
    }
}

/// Evaluates a constant `i32`/`i64` expression (`const`, `add`, `sub`,
/// `mul`, `global.get` of an immutable global with a known value).
fn eval(expr: &wasmparser::ConstExpr<'_>, globals: &[Option<i64>]) -> Option<i64> {
    let mut stack: Vec<i64> = Vec::new();
    let mut reader = expr.get_operators_reader();
    while !reader.eof() {
        match reader.read().ok()? {
            Operator::I32Const { value } => stack.push(i64::from(value as u32)),
            Operator::I64Const { value } => stack.push(value),
            Operator::GlobalGet { global_index } => stack.push((*globals.get(global_index as usize)?)?),
            Operator::I32Add => {
                let (b, a) = (stack.pop()?, stack.pop()?);
                stack.push(i64::from((a as u32).wrapping_add(b as u32)));
            }
            Operator::I32Sub => {
                let (b, a) = (stack.pop()?, stack.pop()?);
                stack.push(i64::from((a as u32).wrapping_sub(b as u32)));
            }
            Operator::I32Mul => {
                let (b, a) = (stack.pop()?, stack.pop()?);
                stack.push(i64::from((a as u32).wrapping_mul(b as u32)));
            }
            Operator::End => break,
            _ => return None,
        }
    }
    stack.pop()
}

/// Function indices move; every memory becomes memory 0 (instructions that
/// need more than that are rewritten before they reach the reencoder).
struct Remap {
    funcs: Vec<u32>,
}

impl Reencode for Remap {
    type Error = std::convert::Infallible;

    // Indices were checked by the validator of the caller, so the map is
    // complete; `u32::MAX` would only surface as a validation error.
    fn function_index(&mut self, func: u32) -> Result<u32, ReencodeError<Self::Error>> {
        Ok(self.funcs.get(func as usize).copied().unwrap_or(u32::MAX))
    }
    fn memory_index(&mut self, _memory: u32) -> Result<u32, ReencodeError<Self::Error>> {
        Ok(0)
    }
}

/// A memory access: its memarg, width in bytes and, for stores and lane
/// instructions, the type of the value operand above the address.
fn access<'m>(op: &'m mut Operator<'_>) -> Option<(&'m mut MemArg, u32, Option<ValType>)> {
    use Operator as O;
    let v128 = Some(ValType::V128);
    Some(match op {
        O::I32Load8S { memarg }
        | O::I32Load8U { memarg }
        | O::I64Load8S { memarg }
        | O::I64Load8U { memarg }
        | O::V128Load8Splat { memarg } => (memarg, 1, None),
        O::I32Load16S { memarg }
        | O::I32Load16U { memarg }
        | O::I64Load16S { memarg }
        | O::I64Load16U { memarg }
        | O::V128Load16Splat { memarg } => (memarg, 2, None),
        O::I32Load { memarg }
        | O::F32Load { memarg }
        | O::I64Load32S { memarg }
        | O::I64Load32U { memarg }
        | O::V128Load32Splat { memarg }
        | O::V128Load32Zero { memarg } => (memarg, 4, None),
        O::I64Load { memarg }
        | O::F64Load { memarg }
        | O::V128Load8x8S { memarg }
        | O::V128Load8x8U { memarg }
        | O::V128Load16x4S { memarg }
        | O::V128Load16x4U { memarg }
        | O::V128Load32x2S { memarg }
        | O::V128Load32x2U { memarg }
        | O::V128Load64Splat { memarg }
        | O::V128Load64Zero { memarg } => (memarg, 8, None),
        O::V128Load { memarg } => (memarg, 16, None),
        O::I32Store8 { memarg } => (memarg, 1, Some(ValType::I32)),
        O::I64Store8 { memarg } => (memarg, 1, Some(ValType::I64)),
        O::I32Store16 { memarg } => (memarg, 2, Some(ValType::I32)),
        O::I64Store16 { memarg } => (memarg, 2, Some(ValType::I64)),
        O::I32Store { memarg } => (memarg, 4, Some(ValType::I32)),
        O::I64Store32 { memarg } => (memarg, 4, Some(ValType::I64)),
        O::F32Store { memarg } => (memarg, 4, Some(ValType::F32)),
        O::I64Store { memarg } => (memarg, 8, Some(ValType::I64)),
        O::F64Store { memarg } => (memarg, 8, Some(ValType::F64)),
        O::V128Store { memarg } => (memarg, 16, v128),
        O::V128Load8Lane { memarg, .. } | O::V128Store8Lane { memarg, .. } => (memarg, 1, v128),
        O::V128Load16Lane { memarg, .. } | O::V128Store16Lane { memarg, .. } => (memarg, 2, v128),
        O::V128Load32Lane { memarg, .. } | O::V128Store32Lane { memarg, .. } => (memarg, 4, v128),
        O::V128Load64Lane { memarg, .. } | O::V128Store64Lane { memarg, .. } => (memarg, 8, v128),
        _ => return None,
    })
}

/// Scratch locals appended to a rewritten function, by slot.
const SCRATCH: [ValType; 7] =
    [ValType::I32, ValType::I32, ValType::I32, ValType::I64, ValType::F32, ValType::F64, ValType::V128];

fn scratch_slot(ty: ValType) -> u32 {
    match ty {
        ValType::I64 => 3,
        ValType::F32 => 4,
        ValType::F64 => 5,
        ValType::V128 => 6,
        _ => 1,
    }
}

fn rewrite_body(
    remap: &mut Remap,
    module: &[u8],
    body: &FunctionBody<'_>,
    params: u32,
    layout: &Layout,
    globals: &Globals,
    helpers: &mut Helpers,
) -> Result<Function> {
    let mut locals: Vec<(u32, ValType)> = Vec::new();
    let mut local_count = params;
    for pair in body.get_locals_reader()? {
        let (count, ty) = pair?;
        local_count = local_count.checked_add(count).context("too many locals")?;
        locals.push((count, remap.val_type(ty)?));
    }
    // The limits this body checks against, each cached in a local: read
    // once on entry and again after every call (only a call can grow a
    // memory: `memory.grow` is one too), so a loop compares with a
    // register instead of loading a global on every access. A limit only
    // ever rises, and it is re-read after anything that could raise it.
    let limits = checked_limits(body, layout)?;
    let cached = |k: u32, width: u32| limits.iter().position(|l| *l == (k, width)).map(|i| local_count + i as u32);
    let refresh: Vec<I<'static>> = limits
        .iter()
        .enumerate()
        .flat_map(|(i, (k, width))| [I::GlobalGet(globals.limit(*k, *width)), I::LocalSet(local_count + i as u32)])
        .collect();
    if !limits.is_empty() {
        locals.push((limits.len() as u32, ValType::I32));
    }
    let scratch = local_count + limits.len() as u32;
    let mut used_slots = 0u32; // slots 0..used_slots are declared
    let mut out: Vec<u8> = Vec::new();
    let emit = |out: &mut Vec<u8>, insn: &I<'_>| insn.encode(out);
    for insn in &refresh {
        emit(&mut out, insn);
    }

    let mut ops = body.get_operators_reader()?;
    let mut copy_from = ops.original_position();
    while !ops.eof() {
        let (mut op, at) = ops.read_with_offset()?;
        let raw = match module.get(at).copied() {
            Some(0x00 | 0x01 | 0x05 | 0x0b..=0x0f | 0x1a | 0x1b | 0x20..=0x22 | 0x41..=0xc4) => true,
            Some(0x02..=0x04) => !matches!(
                op,
                Operator::Block { blockty: wasmparser::BlockType::FuncType(_) }
                    | Operator::Loop { blockty: wasmparser::BlockType::FuncType(_) }
                    | Operator::If { blockty: wasmparser::BlockType::FuncType(_) }
            ),
            _ => false,
        };
        if raw {
            continue;
        }
        if let Some(before) = module.get(copy_from..at) {
            out.extend_from_slice(before);
        }
        copy_from = ops.original_position();

        if let Some((memarg, width, value)) = access(&mut op) {
            let k = memarg.memory;
            let p = layout.partition(k).with_context(|| format!("memory {k} has no partition"))?;
            let offset = memarg.offset;
            let checked = k != layout.last;
            let physical = offset + p.base();
            if physical > u64::from(u32::MAX) {
                // Past any partition's end: the original traps too.
                if value.is_some() {
                    emit(&mut out, &I::Drop);
                }
                emit(&mut out, &I::Drop);
                emit(&mut out, &I::Unreachable);
                continue;
            }
            if checked {
                if let Some(ty) = value {
                    let slot = scratch_slot(ty);
                    used_slots = used_slots.max(slot + 1);
                    emit(&mut out, &I::LocalSet(scratch + slot));
                }
                used_slots = used_slots.max(1);
                // trap if a + offset >= limit(width). `a + offset` may wrap
                // past 4 GiB and pass: the engine then traps on the
                // rebased access, which lands past the memory's end.
                emit(&mut out, &I::LocalTee(scratch));
                if offset != 0 {
                    emit(&mut out, &I::I32Const(offset as u32 as i32));
                    emit(&mut out, &I::I32Add);
                }
                let limit = match cached(k, width) {
                    Some(local) => I::LocalGet(local),
                    None => I::GlobalGet(globals.limit(k, width)),
                };
                for insn in [
                    limit,
                    I::I32GeU,
                    I::If(BlockType::Empty),
                    I::Unreachable,
                    I::End,
                    I::LocalGet(scratch),
                ] {
                    emit(&mut out, &insn);
                }
                if let Some(ty) = value {
                    emit(&mut out, &I::LocalGet(scratch + scratch_slot(ty)));
                }
            }
            memarg.memory = 0;
            memarg.offset = physical;
            let insn = remap.instruction(op)?;
            emit(&mut out, &insn);
            continue;
        }
        match op {
            Operator::MemorySize { mem } => emit(&mut out, &I::GlobalGet(globals.pages(mem))),
            Operator::MemoryGrow { mem } => {
                emit(&mut out, &I::Call(helpers.get(Helper::Grow(mem))));
                for insn in &refresh {
                    emit(&mut out, insn);
                }
            }
            Operator::MemoryFill { mem } => emit(&mut out, &I::Call(helpers.get(Helper::Fill(mem)))),
            Operator::MemoryCopy { dst_mem, src_mem } => {
                emit(&mut out, &I::Call(helpers.get(Helper::Copy { dst: dst_mem, src: src_mem })))
            }
            Operator::MemoryInit { data_index, mem } => {
                used_slots = used_slots.max(3);
                let range = helpers.get(Helper::Range(mem));
                for insn in [
                    I::LocalSet(scratch + 2),
                    I::LocalSet(scratch + 1),
                    I::LocalGet(scratch + 2),
                    I::I64ExtendI32U,
                    I::Call(range),
                    I::LocalGet(scratch + 1),
                    I::LocalGet(scratch + 2),
                    I::MemoryInit { mem: 0, data_index },
                ] {
                    emit(&mut out, &insn);
                }
            }
            op if module.get(at) == Some(&ATOMIC_PREFIX) => {
                bail!("atomic memory instructions cannot be partitioned ({op:?})")
            }
            op => {
                let call = matches!(op, Operator::Call { .. } | Operator::CallIndirect { .. } | Operator::CallRef { .. });
                let insn = remap.instruction(op)?;
                emit(&mut out, &insn);
                if call {
                    for insn in &refresh {
                        emit(&mut out, insn);
                    }
                }
            }
        }
    }
    if let Some(rest) = module.get(copy_from..ops.original_position()) {
        out.extend_from_slice(rest);
    }
    for slot in 0..used_slots {
        if let Some(ty) = SCRATCH.get(slot as usize) {
            // v128 only when a v128 access needs it (else the output would
            // need SIMD for nothing): slot 6 is the last one.
            locals.push((1, *ty));
        }
    }
    let mut f = Function::new(locals);
    f.raw(out);
    Ok(f)
}

/// The `(partition, width)` limits the checked accesses of `body` compare
/// with, in first-use order.
fn checked_limits(body: &FunctionBody<'_>, layout: &Layout) -> Result<Vec<(u32, u32)>> {
    let mut limits = Vec::new();
    let mut ops = body.get_operators_reader()?;
    while !ops.eof() {
        let mut op = ops.read()?;
        if let Some((memarg, width, _)) = access(&mut op) {
            let k = memarg.memory;
            let within = layout.partition(k).is_some_and(|p| memarg.offset + p.base() <= u64::from(u32::MAX));
            if k != layout.last && within && !limits.contains(&(k, width)) {
                limits.push((k, width));
            }
        }
    }
    Ok(limits)
}

/// The prefix byte of the threads proposal's atomic instructions.
const ATOMIC_PREFIX: u8 = 0xfe;
