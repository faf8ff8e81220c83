//! Phase 2: evaluate a parsed component into an instance graph.
//!
//! Owns: walking every initializer of the root component in order,
//! instantiating nested components with their arguments (a nested component
//! instantiated twice is evaluated twice, so its modules are duplicated),
//! following aliases of every kind, and recording lifts, lowers, builtins
//! and core module instantiations in a [`Graph`]. Refuses, by name and
//! location, every feature it cannot lower (async, streams, futures,
//! error-context, threads, values, imported modules or components).
//! Leaves code generation to `merge` and `link`.

use std::collections::BTreeMap;
use std::rc::Rc;

use anyhow::{Context, Result, anyhow, bail};
use wasmparser::{
    CanonicalFunction, CanonicalOption, ComponentAlias, ComponentDefinedType, ComponentExternalKind,
    ComponentInstance, ComponentOuterAliasKind, ComponentType, ComponentTypeRef, ComponentValType,
    ExternalKind, Instance, InstanceTypeDeclaration, PrimitiveValType, TypeBounds,
};

use crate::graph::*;
use crate::module_info::ModuleInfo;
use crate::parse::{Initializer, ParsedComponent, StaticComponentId, StaticModuleId};
use crate::types::{FuncSig, Prim, ValTy};

/// Guard against components that instantiate nested components
/// exponentially often.
const MAX_MODULE_INSTANCES: usize = 10_000;

/// A core module as a value.
#[derive(Debug, Clone)]
enum ModuleDef {
    Static(StaticModuleId),
}

/// A core instance as a value.
#[derive(Debug, Clone)]
enum CoreInstanceDef {
    Module(ModuleInstanceId),
    Exports(Rc<BTreeMap<String, CoreDef>>),
}

/// A component type as a value (only what lowering looks at).
#[derive(Debug, Clone)]
enum TypeDef {
    Resource(ResourceRef),
    Val(ValTy),
    Func(Rc<FuncSig>),
    /// An instance type: what it exports as types.
    Instance(Rc<InstanceShape>),
    Other,
}

/// The types an instance type exports: resources by name, and value types
/// (records, variants, ... that an interface defines for others to `use`),
/// whose resources are named relative to the instance
/// ([`INSTANCE_RELATIVE`]) until the instance's import path is known.
#[derive(Debug, Default)]
struct InstanceShape {
    resources: Vec<String>,
    types: Vec<(String, ValTy)>,
    /// Exported functions' types (resources instance-relative too).
    funcs: Vec<(String, Rc<FuncSig>)>,
}

/// First segment of a resource path relative to the imported instance
/// whose type declares it (see [`InstanceShape`]).
const INSTANCE_RELATIVE: &str = "<instance>";

/// `ty` with every instance-relative resource path placed under `path`.
fn rebase_resources(ty: &ValTy, path: &[String]) -> ValTy {
    let resource = |r: &ResourceRef| match r {
        ResourceRef::Imported(p) if p.first().is_some_and(|s| s == INSTANCE_RELATIVE) => {
            ResourceRef::Imported(path.iter().chain(p.iter().skip(1)).cloned().collect())
        }
        other => other.clone(),
    };
    let boxed = |t: &ValTy| Box::new(rebase_resources(t, path));
    match ty {
        ValTy::Record(fields) => ValTy::Record(fields.iter().map(|f| rebase_resources(f, path)).collect()),
        ValTy::Tuple(fields) => ValTy::Tuple(fields.iter().map(|f| rebase_resources(f, path)).collect()),
        ValTy::Variant(cases) => {
            ValTy::Variant(cases.iter().map(|c| c.as_ref().map(|t| rebase_resources(t, path))).collect())
        }
        ValTy::List(t) => ValTy::List(boxed(t)),
        ValTy::FixedList(t, n) => ValTy::FixedList(boxed(t), *n),
        ValTy::Option(t) => ValTy::Option(boxed(t)),
        ValTy::Result(ok, err) => ValTy::Result(ok.as_deref().map(boxed), err.as_deref().map(boxed)),
        ValTy::Own(r) => ValTy::Own(resource(r)),
        ValTy::Borrow(r) => ValTy::Borrow(resource(r)),
        other => other.clone(),
    }
}

/// A component instance as a value.
#[derive(Debug, Clone)]
enum InstanceDef {
    Import { path: ImportPath, shape: Rc<InstanceShape> },
    Items(Rc<Vec<(String, ItemDef)>>),
}

/// A component (closure over the enclosing component's spaces for
/// outer aliases).
#[derive(Debug, Clone)]
struct ComponentClosure {
    id: StaticComponentId,
    outer: Option<Rc<OuterSpaces>>,
}

/// The spaces an outer alias may reach, captured when a nested component
/// is defined.
#[derive(Debug)]
struct OuterSpaces {
    modules: Vec<ModuleDef>,
    components: Vec<ComponentClosure>,
    types: Vec<TypeDef>,
    parent: Option<Rc<OuterSpaces>>,
}

/// Any component-level item.
#[derive(Debug, Clone)]
enum ItemDef {
    Func(FuncDef),
    Instance(InstanceDef),
    Type(TypeDef),
    Component(ComponentClosure),
    Module(ModuleDef),
}

/// The index spaces of one component instantiation.
#[derive(Debug, Default)]
struct Frame {
    location: String,
    /// Which component instantiation this is (0 is the root).
    instance: usize,
    core_funcs: Vec<CoreDef>,
    core_tables: Vec<CoreDef>,
    core_memories: Vec<CoreDef>,
    core_globals: Vec<CoreDef>,
    core_tags: Vec<CoreDef>,
    core_instances: Vec<CoreInstanceDef>,
    core_modules: Vec<ModuleDef>,
    funcs: Vec<FuncDef>,
    instances: Vec<InstanceDef>,
    types: Vec<TypeDef>,
    components: Vec<ComponentClosure>,
    exports: Vec<(String, ItemDef)>,
}

fn get<'v, T>(space: &'v [T], index: u32, what: &str, location: &str) -> Result<&'v T> {
    space
        .get(index as usize)
        .ok_or_else(|| anyhow!("{what} index {index} is out of bounds in `{location}`"))
}

/// The inliner's state: the graph under construction plus caches.
#[derive(Debug)]
pub struct Inliner<'p, 'a> {
    parsed: &'p ParsedComponent<'a>,
    pub graph: Graph,
    pub module_infos: BTreeMap<StaticModuleId, Rc<ModuleInfo>>,
    depth: usize,
    /// The component instantiations being evaluated, innermost last.
    stack: Vec<usize>,
}

impl<'p, 'a> Inliner<'p, 'a> {
    pub fn new(parsed: &'p ParsedComponent<'a>) -> Self {
        Inliner { parsed, graph: Graph::default(), module_infos: BTreeMap::new(), depth: 0, stack: Vec::new() }
    }

    pub fn module_info(&mut self, id: StaticModuleId) -> Result<Rc<ModuleInfo>> {
        if let Some(info) = self.module_infos.get(&id) {
            return Ok(info.clone());
        }
        let module = self.parsed.module(id);
        let info = Rc::new(ModuleInfo::read(module.bytes, &module.location)?);
        self.module_infos.insert(id, info.clone());
        Ok(info)
    }

    /// Evaluate the root component and record its exports.
    pub fn run(mut self) -> Result<(Graph, BTreeMap<StaticModuleId, Rc<ModuleInfo>>)> {
        let root = ComponentClosure { id: StaticComponentId(0), outer: None };
        let exports = self.instantiate(&root, None, "root".to_string())?;
        for (name, item) in exports.iter() {
            self.record_root_export(name, item)?;
        }
        Ok((self.graph, self.module_infos))
    }

    fn record_root_export(&mut self, name: &str, item: &ItemDef) -> Result<()> {
        match item {
            ItemDef::Func(FuncDef::Lifted(id)) => {
                self.graph.exports.push(ExportedFunc { name: name.to_string(), lifted: *id });
            }
            ItemDef::Func(FuncDef::Import(path)) => bail!(
                "the export `{name}` re-exports the imported function `{}`, which cannot be lowered yet",
                path.join("#")
            ),
            ItemDef::Instance(InstanceDef::Items(items)) => {
                for (field, item) in items.iter() {
                    match item {
                        ItemDef::Func(_) => self.record_root_export(&format!("{name}#{field}"), item)?,
                        ItemDef::Type(TypeDef::Resource(ResourceRef::Defined(id))) => {
                            let res = self.graph.resources.get_mut(id.0).context("resource out of range")?;
                            if res.export_name.is_none() {
                                res.export_name = Some((name.to_string(), field.to_string()));
                            }
                        }
                        ItemDef::Instance(_) => bail!(
                            "the export `{name}` holds the nested instance `{field}`, which cannot be lowered yet"
                        ),
                        _ => {}
                    }
                }
            }
            ItemDef::Instance(InstanceDef::Import { path, .. }) => bail!(
                "the export `{name}` re-exports the imported instance `{}`, which cannot be lowered yet",
                path.join("#")
            ),
            ItemDef::Type(TypeDef::Resource(ResourceRef::Defined(id))) => {
                let res = self.graph.resources.get_mut(id.0).context("resource out of range")?;
                if res.export_name.is_none() {
                    res.export_name = Some(("$root".to_string(), name.to_string()));
                }
            }
            ItemDef::Type(_) => {}
            ItemDef::Component(_) => bail!("the export `{name}` is a component, which cannot be lowered"),
            ItemDef::Module(_) => bail!("the export `{name}` is a core module, which cannot be lowered"),
        }
        Ok(())
    }

    /// Evaluate one component instantiation; `args` is `None` for the root
    /// (whose imports stay imports).
    fn instantiate(
        &mut self,
        closure: &ComponentClosure,
        args: Option<&BTreeMap<String, ItemDef>>,
        location: String,
    ) -> Result<Rc<Vec<(String, ItemDef)>>> {
        self.depth += 1;
        if self.depth > 100 {
            bail!("components are nested more than 100 deep at `{location}`");
        }
        let instance = self.graph.component_instances;
        self.graph.component_instances += 1;
        self.graph.component_parents.push(self.stack.last().copied());
        self.stack.push(instance);
        let component = self.parsed.component(closure.id);
        let mut frame = Frame { location: location.clone(), instance, ..Frame::default() };
        for init in &component.initializers {
            self.initializer(&mut frame, closure, args, init)
                .with_context(|| format!("in `{}`", component.location))?;
        }
        self.stack.pop();
        self.depth -= 1;
        Ok(Rc::new(frame.exports))
    }

    fn initializer(
        &mut self,
        frame: &mut Frame,
        closure: &ComponentClosure,
        args: Option<&BTreeMap<String, ItemDef>>,
        init: &Initializer<'a>,
    ) -> Result<()> {
        let loc = frame.location.clone();
        match init {
            Initializer::CoreModule(id) => frame.core_modules.push(ModuleDef::Static(*id)),
            Initializer::Component(id) => {
                let outer = Rc::new(OuterSpaces {
                    modules: frame.core_modules.clone(),
                    components: frame.components.clone(),
                    types: frame.types.clone(),
                    parent: closure.outer.clone(),
                });
                frame.components.push(ComponentClosure { id: *id, outer: Some(outer) });
            }
            Initializer::CoreType => {}
            Initializer::CoreInstance(instance) => {
                let def = self.core_instance(frame, instance)?;
                frame.core_instances.push(def);
            }
            Initializer::Instance(instance) => {
                let def = self.component_instance(frame, instance)?;
                frame.instances.push(def);
            }
            Initializer::Alias(alias) => {
                self.graph.alias_count += 1;
                self.alias(frame, closure, alias)?;
            }
            Initializer::Type(ty) => {
                let def = self.component_type(frame, ty)?;
                frame.types.push(def);
            }
            Initializer::Canon { func, offset } => self.canon(frame, func, *offset)?,
            Initializer::Import(import) => {
                let name = import.name.name;
                let item = match args {
                    Some(args) => args
                        .get(name)
                        .cloned()
                        .with_context(|| format!("instantiation of `{loc}` misses the argument `{name}`"))?,
                    None => {
                        self.graph.imports.push(name.to_string());
                        self.import_item(frame, name, &import.ty)?
                    }
                };
                push_item(frame, item);
            }
            Initializer::Export(export) => {
                let item = self.item(frame, export.kind, export.index)?;
                push_item(frame, item.clone());
                frame.exports.push((export.name.name.to_string(), item));
            }
            Initializer::Start { offset } => bail!(
                "a component start function (component-model values) at offset {offset} in `{loc}` cannot be lowered"
            ),
        }
        Ok(())
    }

    /// An item of the root component's imports.
    fn import_item(&mut self, frame: &Frame, name: &str, ty: &ComponentTypeRef) -> Result<ItemDef> {
        let path = vec![name.to_string()];
        Ok(match ty {
            ComponentTypeRef::Func(t) => {
                if let Ok(TypeDef::Func(sig)) = get(&frame.types, *t, "type", &frame.location) {
                    self.graph.import_sigs.insert(path.clone(), (**sig).clone());
                }
                ItemDef::Func(FuncDef::Import(path))
            }
            ComponentTypeRef::Instance(t) => {
                let shape = match get(&frame.types, *t, "type", &frame.location)? {
                    TypeDef::Instance(shape) => shape.clone(),
                    _ => Rc::new(InstanceShape::default()),
                };
                ItemDef::Instance(InstanceDef::Import { path, shape })
            }
            ComponentTypeRef::Type(TypeBounds::SubResource) => {
                ItemDef::Type(TypeDef::Resource(ResourceRef::Imported(path)))
            }
            ComponentTypeRef::Type(TypeBounds::Eq(t)) => {
                ItemDef::Type(get(&frame.types, *t, "type", &frame.location)?.clone())
            }
            ComponentTypeRef::Module(_) => {
                bail!("the import `{name}` is a core module: importing modules cannot be lowered")
            }
            ComponentTypeRef::Component(_) => {
                bail!("the import `{name}` is a component: importing components cannot be lowered")
            }
            ComponentTypeRef::Value(_) => {
                bail!("the import `{name}` is a value: component-model values cannot be lowered")
            }
        })
    }

    fn item(&self, frame: &Frame, kind: ComponentExternalKind, index: u32) -> Result<ItemDef> {
        let loc = &frame.location;
        Ok(match kind {
            ComponentExternalKind::Func => ItemDef::Func(get(&frame.funcs, index, "function", loc)?.clone()),
            ComponentExternalKind::Instance => {
                ItemDef::Instance(get(&frame.instances, index, "instance", loc)?.clone())
            }
            ComponentExternalKind::Type => ItemDef::Type(get(&frame.types, index, "type", loc)?.clone()),
            ComponentExternalKind::Component => {
                ItemDef::Component(get(&frame.components, index, "component", loc)?.clone())
            }
            ComponentExternalKind::Module => {
                ItemDef::Module(get(&frame.core_modules, index, "module", loc)?.clone())
            }
            ComponentExternalKind::Value => {
                bail!("`{loc}` uses a component-model value, which cannot be lowered")
            }
        })
    }

    fn core_instance(&mut self, frame: &Frame, instance: &Instance<'a>) -> Result<CoreInstanceDef> {
        let loc = frame.location.clone();
        match instance {
            Instance::Instantiate { module_index, args } => {
                let ModuleDef::Static(module) = get(&frame.core_modules, *module_index, "module", &loc)?.clone();
                let info = self.module_info(module)?;
                let mut by_name: BTreeMap<&str, &CoreInstanceDef> = BTreeMap::new();
                for arg in args.iter() {
                    by_name.insert(arg.name, get(&frame.core_instances, arg.index, "core instance", &loc)?);
                }
                let mut imports = Vec::with_capacity(info.imports.len());
                for import in &info.imports {
                    let arg = by_name.get(import.module.as_str()).with_context(|| {
                        format!(
                            "instantiating `{}` misses the argument `{}`",
                            self.parsed.module(module).location,
                            import.module
                        )
                    })?;
                    imports.push(core_export(arg, &import.field)?);
                }
                if self.graph.instances.len() >= MAX_MODULE_INSTANCES {
                    bail!("the component instantiates more than {MAX_MODULE_INSTANCES} core modules");
                }
                let id = ModuleInstanceId(self.graph.instances.len());
                let location = format!(
                    "{loc}/core instance {} ({})",
                    frame.core_instances.len(),
                    self.parsed.module(module).location
                );
                self.graph.instances.push(ModuleInstance { module, location, imports });
                Ok(CoreInstanceDef::Module(id))
            }
            Instance::FromExports(exports) => {
                let mut map = BTreeMap::new();
                for export in exports.iter() {
                    let def = match export.kind {
                        ExternalKind::Func | ExternalKind::FuncExact => {
                            get(&frame.core_funcs, export.index, "core function", &loc)?
                        }
                        ExternalKind::Table => get(&frame.core_tables, export.index, "core table", &loc)?,
                        ExternalKind::Memory => get(&frame.core_memories, export.index, "core memory", &loc)?,
                        ExternalKind::Global => get(&frame.core_globals, export.index, "core global", &loc)?,
                        ExternalKind::Tag => get(&frame.core_tags, export.index, "core tag", &loc)?,
                    };
                    map.insert(export.name.to_string(), def.clone());
                }
                Ok(CoreInstanceDef::Exports(Rc::new(map)))
            }
        }
    }

    fn component_instance(&mut self, frame: &Frame, instance: &ComponentInstance<'a>) -> Result<InstanceDef> {
        let loc = frame.location.clone();
        match instance {
            ComponentInstance::Instantiate { component_index, args } => {
                let closure = get(&frame.components, *component_index, "component", &loc)?.clone();
                let mut map = BTreeMap::new();
                for arg in args.iter() {
                    map.insert(arg.name.to_string(), self.item(frame, arg.kind, arg.index)?);
                }
                let child = format!("{loc}/instance {}", frame.instances.len());
                let exports = self.instantiate(&closure, Some(&map), child)?;
                Ok(InstanceDef::Items(exports))
            }
            ComponentInstance::FromExports(exports) => {
                let mut items = Vec::new();
                for export in exports.iter() {
                    items.push((export.name.name.to_string(), self.item(frame, export.kind, export.index)?));
                }
                Ok(InstanceDef::Items(Rc::new(items)))
            }
        }
    }

    fn alias(&mut self, frame: &mut Frame, closure: &ComponentClosure, alias: &ComponentAlias<'a>) -> Result<()> {
        let loc = frame.location.clone();
        match alias {
            ComponentAlias::InstanceExport { kind, instance_index, name } => {
                let instance = get(&frame.instances, *instance_index, "instance", &loc)?.clone();
                let item = match instance {
                    InstanceDef::Import { path: instance_path, shape } => {
                        let mut path = instance_path.clone();
                        path.push(name.to_string());
                        match kind {
                            ComponentExternalKind::Func => {
                                if let Some((_, sig)) = shape.funcs.iter().find(|(n, _)| n == name) {
                                    let rebase = |t: &ValTy| rebase_resources(t, &instance_path);
                                    let sig = FuncSig {
                                        params: sig.params.iter().map(|(n, t)| (n.clone(), rebase(t))).collect(),
                                        result: sig.result.as_ref().map(rebase),
                                        is_async: sig.is_async,
                                    };
                                    self.graph.import_sigs.insert(path.clone(), sig);
                                }
                                ItemDef::Func(FuncDef::Import(path))
                            }
                            ComponentExternalKind::Instance => {
                                ItemDef::Instance(InstanceDef::Import { path, shape: Rc::new(InstanceShape::default()) })
                            }
                            ComponentExternalKind::Type => {
                                if shape.resources.iter().any(|r| r == name) {
                                    ItemDef::Type(TypeDef::Resource(ResourceRef::Imported(path)))
                                } else if let Some((_, ty)) = shape.types.iter().find(|(n, _)| n == name) {
                                    ItemDef::Type(TypeDef::Val(rebase_resources(ty, &instance_path)))
                                } else {
                                    ItemDef::Type(TypeDef::Val(ValTy::Opaque))
                                }
                            }
                            other => bail!(
                                "`{loc}` aliases a {other:?} out of the imported instance `{}`, which cannot be lowered",
                                path.join("#")
                            ),
                        }
                    }
                    InstanceDef::Items(items) => items
                        .iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, item)| item.clone())
                        .with_context(|| format!("instance {instance_index} has no export `{name}` in `{loc}`"))?,
                };
                push_item(frame, item);
            }
            ComponentAlias::CoreInstanceExport { kind, instance_index, name } => {
                let instance = get(&frame.core_instances, *instance_index, "core instance", &loc)?;
                let def = core_export(instance, name)?;
                match kind {
                    ExternalKind::Func | ExternalKind::FuncExact => frame.core_funcs.push(def),
                    ExternalKind::Table => frame.core_tables.push(def),
                    ExternalKind::Memory => frame.core_memories.push(def),
                    ExternalKind::Global => frame.core_globals.push(def),
                    ExternalKind::Tag => frame.core_tags.push(def),
                }
            }
            ComponentAlias::Outer { kind, count, index } => {
                let mut spaces = closure.outer.clone();
                if *count == 0 {
                    // An outer alias of count 0 refers to the current component.
                    match kind {
                        ComponentOuterAliasKind::CoreModule => {
                            let m = get(&frame.core_modules, *index, "module", &loc)?.clone();
                            frame.core_modules.push(m);
                        }
                        ComponentOuterAliasKind::CoreType => {}
                        ComponentOuterAliasKind::Type => {
                            let t = get(&frame.types, *index, "type", &loc)?.clone();
                            frame.types.push(t);
                        }
                        ComponentOuterAliasKind::Component => {
                            let c = get(&frame.components, *index, "component", &loc)?.clone();
                            frame.components.push(c);
                        }
                    }
                    return Ok(());
                }
                for _ in 1..*count {
                    spaces = spaces.and_then(|s| s.parent.clone());
                }
                let spaces = spaces.with_context(|| format!("outer alias of count {count} escapes `{loc}`"))?;
                match kind {
                    ComponentOuterAliasKind::CoreModule => {
                        frame.core_modules.push(get(&spaces.modules, *index, "outer module", &loc)?.clone())
                    }
                    ComponentOuterAliasKind::CoreType => {}
                    ComponentOuterAliasKind::Type => {
                        frame.types.push(get(&spaces.types, *index, "outer type", &loc)?.clone())
                    }
                    ComponentOuterAliasKind::Component => {
                        frame.components.push(get(&spaces.components, *index, "outer component", &loc)?.clone())
                    }
                }
            }
        }
        Ok(())
    }

    fn component_type(&mut self, frame: &Frame, ty: &ComponentType<'a>) -> Result<TypeDef> {
        let loc = &frame.location;
        Ok(match ty {
            ComponentType::Resource { rep, dtor } => {
                if *rep != wasmparser::ValType::I32 {
                    bail!("a resource in `{loc}` has the representation {rep:?}; only i32 is supported");
                }
                let dtor = match dtor {
                    Some(f) => Some(get(&frame.core_funcs, *f, "core function", loc)?.clone()),
                    None => None,
                };
                let id = DefinedResourceId(self.graph.resources.len());
                self.graph.resources.push(DefinedResource {
                    location: format!("{loc}: type {}", frame.types.len()),
                    owner: frame.instance,
                    dtor,
                    export_name: None,
                });
                TypeDef::Resource(ResourceRef::Defined(id))
            }
            ComponentType::Defined(defined) => TypeDef::Val(self.defined_type(frame, defined)?),
            ComponentType::Func(func) => {
                let mut params = Vec::new();
                for (name, ty) in func.params.iter() {
                    params.push((name.to_string(), self.val_type(frame, ty)?));
                }
                let result = match &func.result {
                    Some(ty) => Some(self.val_type(frame, ty)?),
                    None => None,
                };
                TypeDef::Func(Rc::new(FuncSig { params, result, is_async: func.async_ }))
            }
            ComponentType::Instance(decls) => TypeDef::Instance(Rc::new(self.instance_shape(frame, decls))),
            ComponentType::Component(_) => TypeDef::Other,
        })
    }

    /// What an instance type exports as types, evaluated in its own type
    /// index space (outer aliases of depth 1 reach `frame`'s types). A type
    /// this lowering cannot represent is opaque, as an unknown one is: it
    /// only matters if a value of it is copied.
    fn instance_shape(&mut self, frame: &Frame, decls: &[InstanceTypeDeclaration<'a>]) -> InstanceShape {
        let mut shape = InstanceShape::default();
        let mut local = Frame { location: frame.location.clone(), instance: frame.instance, ..Frame::default() };
        for decl in decls {
            match decl {
                InstanceTypeDeclaration::Type(ty) => {
                    let def = self.component_type(&local, ty).unwrap_or(TypeDef::Val(ValTy::Opaque));
                    local.types.push(def);
                }
                InstanceTypeDeclaration::Alias(ComponentAlias::Outer {
                    kind: ComponentOuterAliasKind::Type,
                    count,
                    index,
                }) => {
                    let def = match count {
                        1 => frame.types.get(*index as usize).cloned().unwrap_or(TypeDef::Other),
                        _ => TypeDef::Other,
                    };
                    local.types.push(def);
                }
                InstanceTypeDeclaration::Export { name, ty: ComponentTypeRef::Func(t) } => {
                    if let Some(TypeDef::Func(sig)) = local.types.get(*t as usize) {
                        shape.funcs.push((name.name.to_string(), sig.clone()));
                    }
                }
                InstanceTypeDeclaration::Export { name, ty: ComponentTypeRef::Type(bounds) } => {
                    let name = name.name.to_string();
                    let def = match bounds {
                        TypeBounds::SubResource => {
                            shape.resources.push(name.clone());
                            TypeDef::Resource(ResourceRef::Imported(vec![INSTANCE_RELATIVE.to_string(), name]))
                        }
                        TypeBounds::Eq(t) => {
                            let def = local.types.get(*t as usize).cloned().unwrap_or(TypeDef::Other);
                            if let TypeDef::Val(ty) = &def {
                                shape.types.push((name, ty.clone()));
                            }
                            def
                        }
                    };
                    local.types.push(def);
                }
                _ => {}
            }
        }
        shape
    }

    fn val_type(&self, frame: &Frame, ty: &ComponentValType) -> Result<ValTy> {
        match ty {
            ComponentValType::Primitive(p) => Ok(ValTy::Prim(prim(*p, &frame.location)?)),
            ComponentValType::Type(t) => match get(&frame.types, *t, "type", &frame.location)? {
                TypeDef::Val(v) => Ok(v.clone()),
                _ => bail!("type {t} in `{}` is not a value type", frame.location),
            },
        }
    }

    fn defined_type(&self, frame: &Frame, ty: &ComponentDefinedType<'a>) -> Result<ValTy> {
        let loc = &frame.location;
        let resource = |t: &u32| -> Result<ResourceRef> {
            match get(&frame.types, *t, "type", loc)? {
                TypeDef::Resource(r) => Ok(r.clone()),
                _ => bail!("handle type in `{loc}` does not refer to a resource"),
            }
        };
        Ok(match ty {
            ComponentDefinedType::Primitive(p) => ValTy::Prim(prim(*p, loc)?),
            ComponentDefinedType::Record(fields) => ValTy::Record(
                fields.iter().map(|(_, t)| self.val_type(frame, t)).collect::<Result<_>>()?,
            ),
            ComponentDefinedType::Variant(cases) => ValTy::Variant(
                cases
                    .iter()
                    .map(|c| c.ty.as_ref().map(|t| self.val_type(frame, t)).transpose())
                    .collect::<Result<_>>()?,
            ),
            ComponentDefinedType::List(t) => ValTy::List(Box::new(self.val_type(frame, t)?)),
            // The canonical ABI passes `map<k, v>` as `list<tuple<k, v>>`.
            ComponentDefinedType::Map(k, v) => ValTy::List(Box::new(ValTy::Tuple(vec![
                self.val_type(frame, k)?,
                self.val_type(frame, v)?,
            ]))),
            ComponentDefinedType::FixedLengthList(t, n) => {
                ValTy::FixedList(Box::new(self.val_type(frame, t)?), *n)
            }
            ComponentDefinedType::Tuple(ts) => {
                ValTy::Tuple(ts.iter().map(|t| self.val_type(frame, t)).collect::<Result<_>>()?)
            }
            ComponentDefinedType::Flags(names) => ValTy::Flags(names.len()),
            ComponentDefinedType::Enum(names) => ValTy::Enum(names.len()),
            ComponentDefinedType::Option(t) => ValTy::Option(Box::new(self.val_type(frame, t)?)),
            ComponentDefinedType::Result { ok, err } => ValTy::Result(
                ok.as_ref().map(|t| self.val_type(frame, t)).transpose()?.map(Box::new),
                err.as_ref().map(|t| self.val_type(frame, t)).transpose()?.map(Box::new),
            ),
            ComponentDefinedType::Own(t) => ValTy::Own(resource(t)?),
            ComponentDefinedType::Borrow(t) => ValTy::Borrow(resource(t)?),
            ComponentDefinedType::Future(_) => {
                bail!("a `future` type in `{loc}`: futures (component-model async) are not supported")
            }
            ComponentDefinedType::Stream(_) => {
                bail!("a `stream` type in `{loc}`: streams (component-model async) are not supported")
            }
        })
    }

    fn options(&self, frame: &Frame, options: &[CanonicalOption], what: &str) -> Result<CanonOptions> {
        let loc = &frame.location;
        let mut out = CanonOptions {
            memory: None,
            realloc: None,
            post_return: None,
            encoding: StringEncoding::Utf8,
        };
        for option in options {
            match option {
                CanonicalOption::UTF8 => out.encoding = StringEncoding::Utf8,
                CanonicalOption::UTF16 => out.encoding = StringEncoding::Utf16,
                CanonicalOption::CompactUTF16 => out.encoding = StringEncoding::CompactUtf16,
                CanonicalOption::Memory(m) => {
                    out.memory = Some(get(&frame.core_memories, *m, "core memory", loc)?.clone())
                }
                CanonicalOption::Realloc(f) => {
                    out.realloc = Some(get(&frame.core_funcs, *f, "core function", loc)?.clone())
                }
                CanonicalOption::PostReturn(f) => {
                    out.post_return = Some(get(&frame.core_funcs, *f, "core function", loc)?.clone())
                }
                CanonicalOption::Async | CanonicalOption::Callback(_) => {
                    bail!("{what} uses the `async` option: component-model async is not supported")
                }
                CanonicalOption::CoreType(_) | CanonicalOption::Gc => {
                    bail!("{what} uses the GC canonical ABI, which is not supported")
                }
            }
        }
        Ok(out)
    }

    fn canon(&mut self, frame: &mut Frame, func: &CanonicalFunction, offset: usize) -> Result<()> {
        let loc = frame.location.clone();
        let what = |name: &str| format!("`canon {name}` at offset {offset} in `{loc}`");
        match func {
            CanonicalFunction::Lift { core_func_index, type_index, options } => {
                let what = what("lift");
                let core = get(&frame.core_funcs, *core_func_index, "core function", &loc)?.clone();
                let sig = match get(&frame.types, *type_index, "type", &loc)? {
                    TypeDef::Func(sig) => (**sig).clone(),
                    _ => bail!("{what} lifts with a type that is not a function type"),
                };
                if sig.is_async {
                    bail!("{what} lifts an `async` function type: component-model async is not supported");
                }
                let options = self.options(frame, options, &what)?;
                let id = LiftedId(self.graph.lifted.len());
                self.graph.lifted.push(Lifted { owner: frame.instance, core, options, sig, location: what });
                frame.funcs.push(FuncDef::Lifted(id));
            }
            CanonicalFunction::Lower { func_index, options } => {
                let what = what("lower");
                let func = get(&frame.funcs, *func_index, "function", &loc)?.clone();
                let options = self.options(frame, options, &what)?;
                let (target, sig) = match func {
                    FuncDef::Import(path) => (LowerTarget::Import(path), None),
                    FuncDef::Lifted(id) => (LowerTarget::Lifted(id), Some(self.graph.lifted(id).sig.clone())),
                };
                let id = LoweredId(self.graph.lowered.len());
                self.graph.lowered.push(Lowered { target, options, sig, location: what, owner: frame.instance });
                frame.core_funcs.push(CoreDef::Lowered(id));
            }
            CanonicalFunction::ResourceNew { resource }
            | CanonicalFunction::ResourceRep { resource }
            | CanonicalFunction::ResourceDrop { resource } => {
                let kind = match func {
                    CanonicalFunction::ResourceNew { .. } => BuiltinKind::ResourceNew,
                    CanonicalFunction::ResourceRep { .. } => BuiltinKind::ResourceRep,
                    _ => BuiltinKind::ResourceDrop,
                };
                let resource = match get(&frame.types, *resource, "type", &loc)? {
                    TypeDef::Resource(r) => r.clone(),
                    _ => bail!("{} names a type that is not a resource", what(kind.name())),
                };
                let builtin = Builtin { kind, resource, owner: frame.instance };
                let id = match self.graph.builtins.iter().position(|b| *b == builtin) {
                    Some(i) => BuiltinId(i),
                    None => {
                        self.graph.builtins.push(builtin);
                        BuiltinId(self.graph.builtins.len() - 1)
                    }
                };
                frame.core_funcs.push(CoreDef::Builtin(id));
            }
            other => {
                let (name, feature) = unsupported_canon(other);
                bail!("{} is not supported: {feature} cannot be lowered yet", what(name));
            }
        }
        Ok(())
    }
}

/// Name and feature of a canonical builtin we do not implement.
fn unsupported_canon(func: &CanonicalFunction) -> (&'static str, &'static str) {
    use CanonicalFunction as C;
    match func {
        C::ThreadSpawnRef { .. } | C::ThreadSpawnIndirect { .. } => ("thread.spawn", "threads"),
        C::ThreadAvailableParallelism => ("thread.available-parallelism", "threads"),
        C::StreamNew { .. }
        | C::StreamRead { .. }
        | C::StreamWrite { .. }
        | C::StreamCancelRead { .. }
        | C::StreamCancelWrite { .. }
        | C::StreamDropReadable { .. }
        | C::StreamDropWritable { .. } => ("stream.*", "streams (component-model async)"),
        C::FutureNew { .. }
        | C::FutureRead { .. }
        | C::FutureWrite { .. }
        | C::FutureCancelRead { .. }
        | C::FutureCancelWrite { .. }
        | C::FutureDropReadable { .. }
        | C::FutureDropWritable { .. } => ("future.*", "futures (component-model async)"),
        C::ErrorContextNew { .. } | C::ErrorContextDebugMessage { .. } | C::ErrorContextDrop => {
            ("error-context.*", "error-context")
        }
        _ => ("async builtin", "component-model async"),
    }
}

fn prim(p: PrimitiveValType, location: &str) -> Result<Prim> {
    Ok(match p {
        PrimitiveValType::Bool => Prim::Bool,
        PrimitiveValType::S8 => Prim::S8,
        PrimitiveValType::U8 => Prim::U8,
        PrimitiveValType::S16 => Prim::S16,
        PrimitiveValType::U16 => Prim::U16,
        PrimitiveValType::S32 => Prim::S32,
        PrimitiveValType::U32 => Prim::U32,
        PrimitiveValType::S64 => Prim::S64,
        PrimitiveValType::U64 => Prim::U64,
        PrimitiveValType::F32 => Prim::F32,
        PrimitiveValType::F64 => Prim::F64,
        PrimitiveValType::Char => Prim::Char,
        PrimitiveValType::String => Prim::String,
        PrimitiveValType::ErrorContext => {
            bail!("an `error-context` type in `{location}`: error-context is not supported")
        }
    })
}

fn core_export(instance: &CoreInstanceDef, name: &str) -> Result<CoreDef> {
    match instance {
        CoreInstanceDef::Module(id) => Ok(CoreDef::Export(*id, name.to_string())),
        CoreInstanceDef::Exports(map) => {
            map.get(name).cloned().with_context(|| format!("core instance has no export `{name}`"))
        }
    }
}

fn push_item(frame: &mut Frame, item: ItemDef) {
    match item {
        ItemDef::Func(f) => frame.funcs.push(f),
        ItemDef::Instance(i) => frame.instances.push(i),
        ItemDef::Type(t) => frame.types.push(t),
        ItemDef::Component(c) => frame.components.push(c),
        ItemDef::Module(m) => frame.core_modules.push(m),
    }
}
