//! What the merge needs to know about one core module, read once.
//!
//! Owns: the import list, export map, index-space sizes, function types and
//! start function of a static core module. Refuses core features the merge
//! cannot carry (shared memories, memory64, GC types). Leaves copying
//! the code to `merge`.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use wasmparser::{
    CompositeInnerType, ExternalKind, FuncType, Parser, Payload, TypeRef, ValType,
};

/// A core import as written in a module.
#[derive(Debug, Clone)]
pub struct CoreImport {
    pub module: String,
    pub field: String,
    pub ty: TypeRef,
}

/// Summary of one static core module.
#[derive(Debug, Clone, Default)]
pub struct ModuleInfo {
    pub imports: Vec<CoreImport>,
    pub exports: BTreeMap<String, (ExternalKind, u32)>,
    /// One entry per type index; `None` for non-function (GC) types.
    pub types: Vec<Option<FuncType>>,
    /// Type index of every function, imported ones first.
    pub func_types: Vec<u32>,
    pub imported_funcs: u32,
    pub imported_tables: u32,
    pub imported_memories: u32,
    pub imported_globals: u32,
    pub imported_tags: u32,
    pub defined_funcs: u32,
    pub defined_tables: u32,
    pub defined_memories: u32,
    pub defined_globals: u32,
    pub defined_tags: u32,
    pub elements: u32,
    pub datas: u32,
    pub start: Option<u32>,
}

impl ModuleInfo {
    /// The function type of function `index` of this module.
    pub fn func_type(&self, index: u32) -> Option<&FuncType> {
        let ty = *self.func_types.get(index as usize)?;
        self.types.get(ty as usize)?.as_ref()
    }

    /// Read `bytes`; `location` names the module in errors.
    pub fn read(bytes: &[u8], location: &str) -> Result<ModuleInfo> {
        let mut info = ModuleInfo::default();
        for payload in Parser::new(0).parse_all(bytes) {
            let payload = payload.with_context(|| format!("failed to parse `{location}`"))?;
            match payload {
                Payload::TypeSection(reader) => {
                    for group in reader {
                        let group = group?;
                        for sub in group.into_types() {
                            match &sub.composite_type.inner {
                                CompositeInnerType::Func(f) if !sub.composite_type.shared => {
                                    info.types.push(Some(f.clone()));
                                }
                                _ => bail!(
                                    "`{location}` uses GC or shared types, which cannot be lowered yet"
                                ),
                            }
                        }
                    }
                }
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        let import = import?;
                        match import.ty {
                            TypeRef::Func(t) | TypeRef::FuncExact(t) => {
                                info.imported_funcs += 1;
                                info.func_types.push(t);
                            }
                            TypeRef::Table(_) => info.imported_tables += 1,
                            TypeRef::Memory(m) => {
                                refuse_memory(&m, location)?;
                                info.imported_memories += 1;
                            }
                            TypeRef::Global(g) => {
                                if g.shared {
                                    bail!("`{location}` imports a shared global: threads are not supported");
                                }
                                info.imported_globals += 1;
                            }
                            TypeRef::Tag(_) => info.imported_tags += 1,
                        }
                        info.imports.push(CoreImport {
                            module: import.module.to_string(),
                            field: import.name.to_string(),
                            ty: import.ty,
                        });
                    }
                }
                Payload::FunctionSection(reader) => {
                    for ty in reader {
                        info.func_types.push(ty?);
                        info.defined_funcs += 1;
                    }
                }
                Payload::TableSection(reader) => {
                    for table in reader {
                        let table = table?;
                        if table.ty.shared {
                            bail!("`{location}` defines a shared table: threads are not supported");
                        }
                        info.defined_tables += 1;
                    }
                }
                Payload::MemorySection(reader) => {
                    for memory in reader {
                        refuse_memory(&memory?, location)?;
                        info.defined_memories += 1;
                    }
                }
                Payload::GlobalSection(reader) => {
                    for global in reader {
                        let global = global?;
                        if global.ty.shared {
                            bail!("`{location}` defines a shared global: threads are not supported");
                        }
                        if matches!(global.ty.content_type, ValType::Ref(r) if !r.is_func_ref() && !r.is_extern_ref())
                        {
                            bail!(
                                "`{location}` uses GC reference types, which cannot be lowered yet: the merged \
                                 module is rewritten with walrus, which cannot represent GC types"
                            );
                        }
                        info.defined_globals += 1;
                    }
                }
                Payload::TagSection(reader) => info.defined_tags += reader.count(),
                Payload::ExportSection(reader) => {
                    for export in reader {
                        let export = export?;
                        info.exports.insert(export.name.to_string(), (export.kind, export.index));
                    }
                }
                Payload::StartSection { func, .. } => info.start = Some(func),
                Payload::ElementSection(reader) => info.elements += reader.count(),
                Payload::DataSection(reader) => info.datas += reader.count(),
                _ => {}
            }
        }
        Ok(info)
    }
}

fn refuse_memory(memory: &wasmparser::MemoryType, location: &str) -> Result<()> {
    if memory.shared {
        bail!("`{location}` uses a shared memory: threads are not supported");
    }
    if memory.memory64 {
        bail!(
            "`{location}` uses a 64-bit memory (memory64), which cannot be lowered yet: the canonical ABI over a \
             64-bit memory passes i64 pointers and lengths, and the adapters and builtins are generated for \
             32-bit memories only"
        );
    }
    Ok(())
}
