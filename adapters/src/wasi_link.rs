//! Links the preview2 shim into one core module that imports WASI 0.2.
//!
//! Owns: turning a single core module whose remaining imports include WASI
//! 0.2 functions (named by interface, as `lower --abi canonical` leaves them,
//! or as a `wasm32-wasip2` main module has them) into one core module that
//! imports only `wasi_snapshot_preview1` for them. The shim's functions are
//! appended, only those reachable from the imports actually used; the shim's
//! `memory` and `cabi_realloc` imports become the module's own exports of
//! those names.
//!
//! Does not own: which imports go to the shim (`super::resolve_import`
//! decides, from the mode), merging component modules (`karmem-core-lowering`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context, Result, bail, ensure};
use wasm_encoder::reencode::{self, Reencode};
use wasmparser::{
    ExternalKind, FuncType, FunctionBody, Operator, Parser, Payload, TypeRef, Validator, WasmFeatures,
};

use super::{MAIN_MODULE, WasiImport, WasiMode, WasiResolution, preview2_shim, resolve_import};

/// What [`link_preview2_shim`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkReport {
    /// The imports satisfied by the shim, as `module#field`.
    pub shimmed: Vec<String>,
    /// The preview1 functions the output imports for the shim.
    pub preview1_imports: Vec<String>,
    /// WASI 0.2 imports kept as imports (`--wasi passthrough`).
    pub passed_through: Vec<String>,
}

/// Links the shim into `module` under `mode`; returns the new module and a
/// report. A module without WASI 0.2 imports comes back unchanged. Every
/// shimmed import allocates its results with the module's `cabi_realloc`
/// export; see [`link_preview2_shim_with`] when imports use different ones.
pub fn link_preview2_shim(module: &[u8], mode: WasiMode) -> Result<(Vec<u8>, LinkReport)> {
    link_preview2_shim_with(module, mode, &|_, _| "cabi_realloc".to_string())
}

/// [`link_preview2_shim`], where `realloc_of(module, field)` names the
/// module's exported function that the import's `canon lower` uses as its
/// `realloc` (a wasip1 component's adapter brings its own,
/// `cabi_import_realloc`, and expects results through it). The shim's
/// functions are linked once per distinct realloc; the copies share one
/// state (globals, region, handle table).
pub fn link_preview2_shim_with(
    module: &[u8],
    mode: WasiMode,
    realloc_of: &dyn Fn(&str, &str) -> String,
) -> Result<(Vec<u8>, LinkReport)> {
    validate(module).context("the module to link the wasi shim into is not valid")?;
    let main = ModuleInfo::parse(module).context("failed to read the module to link the wasi shim into")?;
    let shim = ModuleInfo::parse(preview2_shim()?).context("failed to read the wasi shim")?;
    let mut report = LinkReport::default();

    // The memory each import's pointers point into: its qualifier (an
    // import lowered into a second memory, `karmem_partition::module_in_memory`),
    // else the lowering's record, else the memory exported as `memory`.
    let boundaries = crate::abi::Boundaries::read(module)?;
    let main_memory = main.exported_memory("memory").ok();
    let memory_of = |module_name: &str, field: &str| -> Result<u32> {
        if let (_, Some(memory)) = karmem_partition::split_module_memory(module_name) {
            return Ok(memory);
        }
        match boundaries.import_memory(&format!("{module_name}#{field}")) {
            Some(name) => main.exported_memory(name),
            None => main_memory.context("the wasi shim needs the module's exported `memory`"),
        }
    };

    // Which of the main module's function imports go to which shim export,
    // grouped by the memory and realloc their results go through.
    let mut groups: BTreeMap<(u32, String), BTreeMap<u32, u32>> = BTreeMap::new(); // (memory, realloc) -> (import -> shim func)
    for (index, import) in main.func_imports() {
        let (plain, _) = karmem_partition::split_module_memory(&import.module);
        let resolution = resolve_import(mode, plain, &import.field)
            .with_context(|| format!("failed to link import `{}#{}`", import.module, import.field))?;
        match resolution {
            WasiResolution::Keep => {
                if matches!(super::classify_import(plain, &import.field)?, WasiImport::Uncovered { .. }) {
                    report.passed_through.push(format!("{}#{}", import.module, import.field));
                }
            }
            WasiResolution::Shim { export } => {
                let shim_func = shim.exported_func(&export)?;
                let wanted = main.func_type(index)?;
                let provided = shim.func_type(shim_func)?;
                ensure!(
                    wanted == provided,
                    "import `{}#{}` has type {wanted:?}, the wasi shim's `{export}` has {provided:?}",
                    import.module,
                    import.field
                );
                let memory = memory_of(&import.module, &import.field)?;
                groups
                    .entry((memory, realloc_of(&import.module, &import.field)))
                    .or_default()
                    .insert(index, shim_func);
                report.shimmed.push(format!("{}#{}", import.module, import.field));
            }
        }
    }
    if groups.is_empty() {
        return Ok((module.to_vec(), report));
    }
    let shimmed: BTreeMap<u32, u32> = groups.values().flatten().map(|(k, v)| (*k, *v)).collect();
    // Copies in one memory share one state (globals); each memory has its own.
    let memories: Vec<u32> = {
        let mut seen: Vec<u32> = groups.keys().map(|(memory, _)| *memory).collect();
        seen.dedup();
        seen
    };

    // The shim functions each copy needs.
    let reachable: Vec<BTreeSet<u32>> =
        groups.values().map(|imports| shim.reachable_from(imports.values().copied())).collect::<Result<_>>()?;

    // Function index space of the output:
    // [main's kept imports][shim's new imports][main's functions][shim copy 0][shim copy 1]...
    let mut import_slots: Vec<(String, String, u32)> = Vec::new(); // module, field, output type index
    let mut slot_of: HashMap<(String, String), u32> = HashMap::new();
    let main_type_count = main.type_count;
    let mut main_funcs: Vec<Option<u32>> = vec![None; main.func_count() as usize];
    for (index, import) in main.func_imports() {
        if shimmed.contains_key(&index) {
            continue;
        }
        let slot = import_slots.len() as u32;
        slot_of.insert((import.module.clone(), import.field.clone()), slot);
        import_slots.push((import.module.clone(), import.field.clone(), import.type_index));
        set(&mut main_funcs, index, slot)?;
    }
    // The shim's preview1 imports, per memory: a copy in the memory
    // exported as `memory` imports `wasi_snapshot_preview1`; a copy in
    // another memory imports them qualified with its memory, for the
    // partition pass to serve (`karmem_partition`).
    let mut shim_imports_of: BTreeMap<u32, Vec<Option<u32>>> = BTreeMap::new();
    for memory in &memories {
        let any_reachable: BTreeSet<u32> = groups
            .keys()
            .zip(&reachable)
            .filter(|((m, _), _)| m == memory)
            .flat_map(|(_, r)| r.iter().copied())
            .collect();
        let mut shim_imports: Vec<Option<u32>> = vec![None; shim.func_count() as usize];
        for (index, import) in shim.func_imports() {
            if !any_reachable.contains(&index) {
                continue;
            }
            if import.module == MAIN_MODULE {
                ensure!(import.field == "cabi_realloc", "the wasi shim imports unknown `{MAIN_MODULE}#{}`", import.field);
                continue; // each copy maps it to its own realloc
            }
            let module_name = if Some(*memory) == main_memory || import.module != karmem_partition::PREVIEW1 {
                import.module.clone()
            } else {
                karmem_partition::module_in_memory(&import.module, *memory)
            };
            let key = (module_name.clone(), import.field.clone());
            let slot = match slot_of.get(&key) {
                Some(slot) => {
                    let existing = import_slots.get(*slot as usize).map(|entry| entry.2).context("import slot")?;
                    let existing_type =
                        if existing >= main_type_count { shim.type_at(existing - main_type_count)? } else { main.type_at(existing)? };
                    ensure!(
                        existing_type == shim.func_type(index)?,
                        "the module imports `{}#{}` with a different type than the wasi shim",
                        module_name,
                        import.field
                    );
                    *slot
                }
                None => {
                    let slot = import_slots.len() as u32;
                    slot_of.insert(key, slot);
                    import_slots.push((module_name, import.field.clone(), import.type_index + main_type_count));
                    if !report.preview1_imports.contains(&import.field) {
                        report.preview1_imports.push(import.field.clone());
                    }
                    slot
                }
            };
            set(&mut shim_imports, index, slot)?;
        }
        shim_imports_of.insert(*memory, shim_imports);
    }
    let imported = import_slots.len() as u32;
    let main_defined: Vec<u32> = (main.func_import_count..main.func_count()).collect();
    for (offset, index) in main_defined.iter().enumerate() {
        set(&mut main_funcs, *index, imported + offset as u32)?;
    }

    let mut copies: Vec<ShimCopy> = Vec::new();
    let mut next = imported + main_defined.len() as u32;
    for (((memory, realloc), imports), reachable) in groups.iter().zip(&reachable) {
        let mut funcs = shim_imports_of.get(memory).cloned().context("shim imports of a memory")?;
        // Only functions that return lists or strings reach the realloc.
        for (index, import) in shim.func_imports() {
            if import.module != MAIN_MODULE || !reachable.contains(&index) {
                continue;
            }
            let realloc_func = main.exported_func(realloc).with_context(|| {
                format!("the wasi shim returns lists through the module's `{realloc}`, which the module does not export")
            })?;
            ensure!(
                main.func_type(realloc_func)? == shim.func_type(index)?,
                "`{realloc}` does not have the type of a `cabi_realloc`"
            );
            set(&mut funcs, index, lookup(&main_funcs, realloc_func)?)?;
        }
        let defined: Vec<u32> =
            (shim.func_import_count..shim.func_count()).filter(|index| reachable.contains(index)).collect();
        for index in &defined {
            set(&mut funcs, *index, next)?;
            next += 1;
        }
        for (import, shim_func) in imports {
            set(&mut main_funcs, *import, lookup(&funcs, *shim_func)?)?;
        }
        let state = memories.iter().position(|m| m == memory).context("memory of a copy")? as u32;
        copies.push(ShimCopy {
            defined,
            state,
            map: IndexMap {
                funcs,
                type_offset: main_type_count,
                global_offset: main.global_count + state * shim.global_count,
                memories: Some(*memory),
            },
        });
    }

    let mut main_map = IndexMap { funcs: main_funcs, type_offset: 0, global_offset: 0, memories: None };
    let output = encode(module, &shim, &import_slots, &mut main_map, &mut copies)?;
    validate(&output).context("the module linked with the wasi shim does not validate (a bug in the linker)")?;
    Ok((output, report))
}

/// One copy of the shim's functions, bound to one memory and one realloc.
#[derive(Debug)]
struct ShimCopy {
    defined: Vec<u32>,
    /// Which state (set of the shim's globals) it uses: one per memory.
    state: u32,
    map: IndexMap,
}

fn set(map: &mut [Option<u32>], index: u32, value: u32) -> Result<()> {
    let slot = map.get_mut(index as usize).with_context(|| format!("function index {index} out of range"))?;
    *slot = Some(value);
    Ok(())
}

fn lookup(map: &[Option<u32>], index: u32) -> Result<u32> {
    map.get(index as usize)
        .copied()
        .flatten()
        .with_context(|| format!("function {index} has no place in the linked module"))
}

fn validate(bytes: &[u8]) -> Result<()> {
    Validator::new_with_features(WasmFeatures::default()).validate_all(bytes)?;
    Ok(())
}

#[derive(Debug, Clone)]
struct FuncImport {
    module: String,
    field: String,
    type_index: u32,
}

/// What the linker needs to know of one module.
#[derive(Debug, Default)]
struct ModuleInfo {
    type_count: u32,
    func_types: Vec<FuncType>,
    imports: Vec<(u32, FuncImport)>,
    func_import_count: u32,
    global_count: u32,
    defined_func_types: Vec<u32>,
    exports: Vec<(String, ExternalKind, u32)>,
    memory_count: u32,
    calls: Vec<BTreeSet<u32>>,
}

impl ModuleInfo {
    fn parse(bytes: &[u8]) -> Result<Self> {
        let mut info = Self::default();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload? {
                Payload::TypeSection(section) => {
                    for group in section {
                        for sub in group?.into_types() {
                            info.type_count += 1;
                            match sub.composite_type.inner {
                                wasmparser::CompositeInnerType::Func(func) => info.func_types.push(func),
                                _ => bail!("only function types are supported"),
                            }
                        }
                    }
                }
                Payload::ImportSection(section) => {
                    for import in section.into_imports() {
                        let import = import?;
                        match import.ty {
                            TypeRef::Func(type_index) => {
                                let index = info.func_import_count;
                                info.func_import_count += 1;
                                info.imports.push((
                                    index,
                                    FuncImport {
                                        module: import.module.to_string(),
                                        field: import.name.to_string(),
                                        type_index,
                                    },
                                ));
                            }
                            TypeRef::Global(_) => info.global_count += 1,
                            TypeRef::Memory(_) => info.memory_count += 1,
                            // Tags are an index space of their own, which the shim (it has none) leaves as it is.
                            TypeRef::Table(_) | TypeRef::Tag(_) => {}
                            other => bail!("import `{}#{}` of kind {other:?} is not supported", import.module, import.name),
                        }
                    }
                }
                Payload::FunctionSection(section) => {
                    for ty in section {
                        info.defined_func_types.push(ty?);
                    }
                }
                Payload::GlobalSection(section) => info.global_count += section.count(),
                Payload::MemorySection(section) => info.memory_count += section.count(),
                Payload::ExportSection(section) => {
                    for export in section {
                        let export = export?;
                        info.exports.push((export.name.to_string(), export.kind, export.index));
                    }
                }
                Payload::CodeSectionEntry(body) => info.calls.push(direct_calls(&body)?),
                _ => {}
            }
        }
        Ok(info)
    }

    fn func_imports(&self) -> impl Iterator<Item = (u32, &FuncImport)> {
        self.imports.iter().map(|(index, import)| (*index, import))
    }

    fn func_count(&self) -> u32 {
        self.func_import_count + self.defined_func_types.len() as u32
    }

    fn type_at(&self, type_index: u32) -> Result<&FuncType> {
        self.func_types.get(type_index as usize).with_context(|| format!("type {type_index} out of range"))
    }

    fn func_type(&self, func: u32) -> Result<&FuncType> {
        let type_index = if func < self.func_import_count {
            self.imports.get(func as usize).map(|(_, import)| import.type_index)
        } else {
            self.defined_func_types.get((func - self.func_import_count) as usize).copied()
        }
        .with_context(|| format!("function {func} out of range"))?;
        self.type_at(type_index)
    }

    fn exported(&self, name: &str, kind: ExternalKind) -> Option<u32> {
        self.exports.iter().find(|(export, k, _)| export == name && *k == kind).map(|(_, _, index)| *index)
    }

    fn exported_func(&self, name: &str) -> Result<u32> {
        self.exported(name, ExternalKind::Func).with_context(|| format!("no exported function `{name}`"))
    }

    fn exported_memory(&self, name: &str) -> Result<u32> {
        self.exported(name, ExternalKind::Memory).with_context(|| format!("no exported memory `{name}`"))
    }

    /// Functions reachable from `roots` through direct calls.
    fn reachable_from(&self, roots: impl Iterator<Item = u32>) -> Result<BTreeSet<u32>> {
        let mut seen = BTreeSet::new();
        let mut work: Vec<u32> = roots.collect();
        while let Some(func) = work.pop() {
            if !seen.insert(func) || func < self.func_import_count {
                continue;
            }
            let calls = self
                .calls
                .get((func - self.func_import_count) as usize)
                .with_context(|| format!("function {func} has no body"))?;
            work.extend(calls.iter().copied());
        }
        Ok(seen)
    }
}

fn direct_calls(body: &FunctionBody<'_>) -> Result<BTreeSet<u32>> {
    let mut calls = BTreeSet::new();
    let mut reader = body.get_operators_reader()?;
    while !reader.eof() {
        match reader.read()? {
            Operator::Call { function_index } | Operator::ReturnCall { function_index } | Operator::RefFunc {
                function_index,
            } => {
                calls.insert(function_index);
            }
            _ => {}
        }
    }
    Ok(calls)
}

/// Index remapping of one input module into the output.
#[derive(Debug)]
struct IndexMap {
    funcs: Vec<Option<u32>>,
    type_offset: u32,
    global_offset: u32,
    /// `Some(m)`: every memory index becomes `m` (the shim's imported memory).
    memories: Option<u32>,
}

impl Reencode for IndexMap {
    type Error = String;

    fn function_index(&mut self, func: u32) -> Result<u32, reencode::Error<String>> {
        self.funcs
            .get(func as usize)
            .copied()
            .flatten()
            .ok_or_else(|| reencode::Error::UserError(format!("function {func} was not placed")))
    }

    fn type_index(&mut self, ty: u32) -> Result<u32, reencode::Error<String>> {
        Ok(ty + self.type_offset)
    }

    fn global_index(&mut self, global: u32) -> Result<u32, reencode::Error<String>> {
        Ok(global + self.global_offset)
    }

    fn memory_index(&mut self, memory: u32) -> Result<u32, reencode::Error<String>> {
        Ok(self.memories.unwrap_or(memory))
    }
}

fn reencode_error(error: reencode::Error<String>) -> anyhow::Error {
    anyhow::anyhow!("{error:?}")
}

/// Writes the output: main's sections with remapped indices, the shim's
/// types, globals and reachable functions appended.
#[allow(clippy::too_many_arguments)]
fn encode(
    main_bytes: &[u8],
    shim: &ModuleInfo,
    import_slots: &[(String, String, u32)],
    main_map: &mut IndexMap,
    copies: &mut [ShimCopy],
) -> Result<Vec<u8>> {
    use wasm_encoder as enc;
    let shim_bytes = preview2_shim()?;

    let mut types = enc::TypeSection::new();
    let mut functions = enc::FunctionSection::new();
    let mut tables: Option<enc::TableSection> = None;
    let mut memories: Option<enc::MemorySection> = None;
    let mut tags: Option<enc::TagSection> = None;
    let mut globals = enc::GlobalSection::new();
    let mut exports: Option<enc::ExportSection> = None;
    let mut start: Option<enc::StartSection> = None;
    let mut elements: Option<enc::ElementSection> = None;
    let mut data_count: Option<enc::DataCountSection> = None;
    let mut code = enc::CodeSection::new();
    let mut data: Option<enc::DataSection> = None;
    let mut customs: Vec<(String, Vec<u8>)> = Vec::new();

    // main
    for payload in Parser::new(0).parse_all(main_bytes) {
        match payload? {
            Payload::TypeSection(section) => {
                main_map.parse_type_section(&mut types, section).map_err(reencode_error)?;
            }
            Payload::FunctionSection(section) => {
                for ty in section {
                    functions.function(main_map.type_index(ty?).map_err(reencode_error)?);
                }
            }
            Payload::TableSection(section) => {
                let mut out = enc::TableSection::new();
                main_map.parse_table_section(&mut out, section).map_err(reencode_error)?;
                tables = Some(out);
            }
            Payload::MemorySection(section) => {
                let mut out = enc::MemorySection::new();
                main_map.parse_memory_section(&mut out, section).map_err(reencode_error)?;
                memories = Some(out);
            }
            Payload::GlobalSection(section) => {
                main_map.parse_global_section(&mut globals, section).map_err(reencode_error)?;
            }
            Payload::ExportSection(section) => {
                let mut out = enc::ExportSection::new();
                main_map.parse_export_section(&mut out, section).map_err(reencode_error)?;
                exports = Some(out);
            }
            Payload::StartSection { func, .. } => {
                start = Some(enc::StartSection { function_index: main_map.function_index(func).map_err(reencode_error)? });
            }
            Payload::ElementSection(section) => {
                let mut out = enc::ElementSection::new();
                main_map.parse_element_section(&mut out, section).map_err(reencode_error)?;
                elements = Some(out);
            }
            Payload::DataCountSection { count, .. } => data_count = Some(enc::DataCountSection { count }),
            Payload::CodeSectionEntry(body) => {
                main_map.parse_function_body(&mut code, body).map_err(reencode_error)?;
            }
            Payload::DataSection(section) => {
                let mut out = enc::DataSection::new();
                main_map.parse_data_section(&mut out, section).map_err(reencode_error)?;
                data = Some(out);
            }
            // Names index functions, which moved; the other custom sections are kept.
            Payload::CustomSection(section) if section.name() != "name" => {
                customs.push((section.name().to_string(), section.data().to_vec()));
            }
            // Exception tags: one more index space, which the shim does not
            // use; only their function types move with the type indices.
            Payload::TagSection(section) => {
                let mut out = enc::TagSection::new();
                main_map.parse_tag_section(&mut out, section).map_err(reencode_error)?;
                tags = Some(out);
            }
            _ => {}
        }
    }

    // function imports, in output order
    let mut func_imports = enc::ImportSection::new();
    for (module, field, type_index) in import_slots {
        func_imports.import(module, field, enc::EntityType::Function(*type_index));
    }

    // shim: types once, globals once per memory (the copies in one memory
    // share them), functions per copy
    let first = copies.first_mut().context("no shim copy to link")?;
    for payload in Parser::new(0).parse_all(shim_bytes) {
        match payload? {
            Payload::TypeSection(section) => {
                for group in section {
                    first.map.parse_recursive_type_group(types.ty(), group?).map_err(reencode_error)?;
                }
            }
            Payload::DataSection(_) | Payload::TableSection(_) | Payload::MemorySection(_) | Payload::StartSection { .. } => {
                bail!("the wasi shim must own no data, table, memory or start function")
            }
            _ => {}
        }
    }
    let states = copies.iter().map(|copy| copy.state).max().context("no shim copy to link")? + 1;
    for state in 0..states {
        let copy = copies.iter_mut().find(|copy| copy.state == state).context("a state without a copy")?;
        for payload in Parser::new(0).parse_all(shim_bytes) {
            if let Payload::GlobalSection(section) = payload? {
                copy.map.parse_global_section(&mut globals, section).map_err(reencode_error)?;
            }
        }
    }
    for copy in copies.iter_mut() {
        let mut body_index = shim.func_import_count;
        for payload in Parser::new(0).parse_all(shim_bytes) {
            if let Payload::CodeSectionEntry(body) = payload? {
                let index = body_index;
                body_index += 1;
                if copy.defined.contains(&index) {
                    functions.function(shim.func_type_index(index)? + copy.map.type_offset);
                    copy.map.parse_function_body(&mut code, body).map_err(reencode_error)?;
                }
            }
        }
    }

    let mut module = enc::Module::new();
    module.section(&types);
    // Function imports first keep the index space as planned; other imports
    // (memories, globals, tables) have their own index spaces.
    let mut all_imports = func_imports;
    for payload in Parser::new(0).parse_all(main_bytes) {
        if let Payload::ImportSection(section) = payload? {
            for import in section.into_imports() {
                let import = import?;
                if !matches!(import.ty, TypeRef::Func(_)) {
                    let ty = main_map.entity_type(import.ty).map_err(reencode_error)?;
                    all_imports.import(import.module, import.name, ty);
                }
            }
        }
    }
    module.section(&all_imports);
    module.section(&functions);
    if let Some(tables) = &tables {
        module.section(tables);
    }
    if let Some(memories) = &memories {
        module.section(memories);
    }
    if let Some(tags) = &tags {
        module.section(tags);
    }
    module.section(&globals);
    if let Some(exports) = &exports {
        module.section(exports);
    }
    if let Some(start) = &start {
        module.section(start);
    }
    if let Some(elements) = &elements {
        module.section(elements);
    }
    if let Some(count) = &data_count {
        module.section(count);
    }
    module.section(&code);
    if let Some(data) = &data {
        module.section(data);
    }
    for (name, bytes) in &customs {
        module.section(&enc::CustomSection { name: name.into(), data: bytes.into() });
    }
    Ok(module.finish())
}

impl ModuleInfo {
    fn func_type_index(&self, func: u32) -> Result<u32> {
        self.defined_func_types
            .get(func.checked_sub(self.func_import_count).context("not a defined function")? as usize)
            .copied()
            .with_context(|| format!("function {func} out of range"))
    }
}
