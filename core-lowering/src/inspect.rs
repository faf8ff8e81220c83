//! Describe a component's instance graph or a lowered module's interfaces.
//!
//! Owns: the data `karmem-bridge inspect` prints (as text or JSON). Leaves
//! argument handling and output to the CLI.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use serde::Serialize;
use wasmparser::{ExternalKind, Parser, Payload, TypeRef};

use crate::graph::{BuiltinKind, LowerTarget, ResourceRef};
use crate::inline::Inliner;
use crate::parse;

/// One static core module of a component.
#[derive(Debug, Serialize)]
pub struct ModuleSummary {
    pub location: String,
    pub bytes: usize,
    pub imports: usize,
    pub exports: usize,
}

/// One core module instantiation.
#[derive(Debug, Serialize)]
pub struct InstanceSummary {
    pub location: String,
    pub module: String,
}

/// A `canon lift`, with the root export names it reaches.
#[derive(Debug, Serialize)]
pub struct LiftSummary {
    pub location: String,
    pub exported_as: Vec<String>,
}

/// A `canon lower` and what it lowers.
#[derive(Debug, Serialize)]
pub struct LowerSummary {
    pub location: String,
    pub target: String,
}

/// A component's instance graph.
#[derive(Debug, Serialize)]
pub struct ComponentSummary {
    pub modules: Vec<ModuleSummary>,
    pub instances: Vec<InstanceSummary>,
    pub component_instances: usize,
    pub aliases: usize,
    pub lifts: Vec<LiftSummary>,
    pub lowers: Vec<LowerSummary>,
    pub builtins: Vec<String>,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// A core function signature as text, e.g. `(i32, i32) -> (i32)`.
#[derive(Debug, Serialize)]
pub struct FuncSummary {
    pub module: Option<String>,
    pub name: String,
    pub kind: String,
    pub signature: Option<String>,
}

/// A lowered (core) module's interfaces.
#[derive(Debug, Serialize)]
pub struct ModuleInterfaces {
    pub imports: Vec<FuncSummary>,
    pub exports: Vec<FuncSummary>,
    pub memories: u32,
    /// The partition layout of a module whose instances' memories were put
    /// in one (`karmem:partitions`), one line per partition.
    pub partitions: Option<String>,
    pub idl: Option<String>,
    pub custom_sections: Vec<String>,
}

/// Either view, depending on the input.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Summary {
    Component(ComponentSummary),
    CoreModule(ModuleInterfaces),
}

/// Describe `bytes`, a component or a core module.
pub fn inspect(bytes: &[u8]) -> Result<Summary> {
    if parse::is_component(bytes) {
        Ok(Summary::Component(component(bytes)?))
    } else {
        Ok(Summary::CoreModule(lowered_module(bytes)?))
    }
}

/// Evaluate a component and describe its graph.
pub fn component(bytes: &[u8]) -> Result<ComponentSummary> {
    let parsed = parse::parse(bytes)?;
    let (graph, infos) = Inliner::new(&parsed).run().context("failed to evaluate the component")?;
    let modules = parsed
        .modules
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let info = infos.get(&parse::StaticModuleId(i));
            ModuleSummary {
                location: m.location.clone(),
                bytes: m.bytes.len(),
                imports: info.map_or(0, |i| i.imports.len()),
                exports: info.map_or(0, |i| i.exports.len()),
            }
        })
        .collect();
    let instances = graph
        .instances
        .iter()
        .map(|i| InstanceSummary { location: i.location.clone(), module: parsed.module(i.module).location.clone() })
        .collect();
    let lifts = graph
        .lifted
        .iter()
        .enumerate()
        .map(|(i, l)| LiftSummary {
            location: l.location.clone(),
            exported_as: graph.exports.iter().filter(|e| e.lifted.0 == i).map(|e| e.name.clone()).collect(),
        })
        .collect();
    let lowers = graph
        .lowered
        .iter()
        .map(|l| LowerSummary {
            location: l.location.clone(),
            target: match &l.target {
                LowerTarget::Import(path) => format!("import {}", path.join("#")),
                LowerTarget::Lifted(id) => format!("fused with {}", graph.lifted(*id).location),
            },
        })
        .collect();
    let builtins = graph
        .builtins
        .iter()
        .map(|b| {
            let resource = match &b.resource {
                ResourceRef::Defined(r) => graph.resource(*r).location.clone(),
                ResourceRef::Imported(path) => format!("imported {}", path.join("#")),
            };
            let kind = match b.kind {
                BuiltinKind::ResourceNew => "resource.new",
                BuiltinKind::ResourceRep => "resource.rep",
                BuiltinKind::ResourceDrop => "resource.drop",
            };
            format!("{kind} {resource}")
        })
        .collect();
    Ok(ComponentSummary {
        modules,
        instances,
        component_instances: graph.component_instances,
        aliases: graph.alias_count,
        lifts,
        lowers,
        builtins,
        imports: graph.imports.clone(),
        exports: graph.exports.iter().map(|e| e.name.clone()).collect(),
    })
}

fn signature(ty: &wasmparser::FuncType) -> String {
    let list = |ts: &[wasmparser::ValType]| ts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
    format!("({}) -> ({})", list(ty.params()), list(ty.results()))
}

/// Describe a core module's imports and exports.
pub fn lowered_module(bytes: &[u8]) -> Result<ModuleInterfaces> {
    let mut types = Vec::new();
    let mut func_types = Vec::new();
    let mut out = ModuleInterfaces {
        imports: Vec::new(),
        exports: Vec::new(),
        memories: 0,
        partitions: None,
        idl: None,
        custom_sections: Vec::new(),
    };
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.context("failed to parse the core module")? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for sub in group?.into_types() {
                        match &sub.composite_type.inner {
                            wasmparser::CompositeInnerType::Func(f) => types.push(f.clone()),
                            _ => types.push(wasmparser::FuncType::new([], [])),
                        }
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import?;
                    let (kind, signature) = match import.ty {
                        TypeRef::Func(t) | TypeRef::FuncExact(t) => {
                            func_types.push(t);
                            ("func", types.get(t as usize).map(signature))
                        }
                        TypeRef::Memory(_) => {
                            out.memories += 1;
                            ("memory", None)
                        }
                        TypeRef::Table(_) => ("table", None),
                        TypeRef::Global(_) => ("global", None),
                        TypeRef::Tag(_) => ("tag", None),
                    };
                    out.imports.push(FuncSummary {
                        module: Some(import.module.to_string()),
                        name: import.name.to_string(),
                        kind: kind.to_string(),
                        signature,
                    });
                }
            }
            Payload::FunctionSection(reader) => {
                for t in reader {
                    func_types.push(t?);
                }
            }
            Payload::MemorySection(reader) => out.memories += reader.count(),
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export?;
                    exports.push((export.name.to_string(), export.kind, export.index));
                }
            }
            Payload::CustomSection(reader) => {
                out.custom_sections.push(reader.name().to_string());
                if reader.name() == crate::link::IDL_SECTION {
                    out.idl = Some(String::from_utf8_lossy(reader.data()).into_owned());
                }
                if reader.name() == karmem_partition::section::LAYOUT_SECTION {
                    out.partitions = Some(String::from_utf8_lossy(reader.data()).into_owned());
                }
            }
            _ => {}
        }
    }
    for (name, kind, index) in exports {
        let (kind, signature) = match kind {
            ExternalKind::Func | ExternalKind::FuncExact => (
                "func",
                func_types.get(index as usize).and_then(|t| types.get(*t as usize)).map(signature),
            ),
            ExternalKind::Memory => ("memory", None),
            ExternalKind::Table => ("table", None),
            ExternalKind::Global => ("global", None),
            ExternalKind::Tag => ("tag", None),
        };
        out.exports.push(FuncSummary { module: None, name, kind: kind.to_string(), signature });
    }
    Ok(out)
}

/// Render a summary as text for people.
pub fn render(summary: &Summary) -> String {
    let mut s = String::new();
    match summary {
        Summary::Component(c) => {
            let _ = writeln!(s, "component");
            let _ = writeln!(s, "  modules: {}", c.modules.len());
            for m in &c.modules {
                let _ = writeln!(s, "    {} ({} bytes, {} imports, {} exports)", m.location, m.bytes, m.imports, m.exports);
            }
            let _ = writeln!(s, "  core instances: {}", c.instances.len());
            for i in &c.instances {
                let _ = writeln!(s, "    {}", i.location);
            }
            let _ = writeln!(s, "  component instances: {}", c.component_instances);
            let _ = writeln!(s, "  aliases: {}", c.aliases);
            let _ = writeln!(s, "  lifts: {}", c.lifts.len());
            for l in &c.lifts {
                let _ = writeln!(s, "    {} -> {}", l.location, l.exported_as.join(", "));
            }
            let _ = writeln!(s, "  lowers: {}", c.lowers.len());
            for l in &c.lowers {
                let _ = writeln!(s, "    {} <- {}", l.location, l.target);
            }
            let _ = writeln!(s, "  builtins: {}", c.builtins.len());
            for b in &c.builtins {
                let _ = writeln!(s, "    {b}");
            }
            let _ = writeln!(s, "  imports: {}", c.imports.join(", "));
            let _ = writeln!(s, "  exports: {}", c.exports.join(", "));
        }
        Summary::CoreModule(m) => {
            let _ = writeln!(s, "core module");
            let _ = writeln!(s, "  memories: {}", m.memories);
            if let Some(partitions) = &m.partitions {
                let _ = writeln!(s, "  partitions of the memory:");
                for line in partitions.lines() {
                    let _ = writeln!(s, "    {line}");
                }
            }
            let _ = writeln!(s, "  imports:");
            for i in &m.imports {
                let _ = writeln!(
                    s,
                    "    {} {} {} {}",
                    i.kind,
                    i.module.as_deref().unwrap_or(""),
                    i.name,
                    i.signature.as_deref().unwrap_or("")
                );
            }
            let _ = writeln!(s, "  exports:");
            for e in &m.exports {
                let _ = writeln!(s, "    {} {} {}", e.kind, e.name, e.signature.as_deref().unwrap_or(""));
            }
            let _ = writeln!(s, "  custom sections: {}", m.custom_sections.join(", "));
            match &m.idl {
                Some(idl) if idl.is_empty() => {
                    let _ = writeln!(s, "  karmem:idl: (empty)");
                }
                Some(idl) => {
                    let _ = writeln!(s, "  karmem:idl:\n{idl}");
                }
                None => {}
            }
        }
    }
    s
}

/// Render a summary as pretty JSON.
pub fn to_json(summary: &Summary) -> Result<String> {
    serde_json::to_string_pretty(summary).context("failed to render JSON")
}
