//! The mapping from one WIT world to one KarmemIDL file.
//!
//! Owns: which WIT items become which IDL items, in which order, under which
//! names (through `names`), and the refusal of what cannot be mapped yet
//! (`future`, `stream`, `error-context`, async functions). The rules
//! are written up in `docs/IDL.md`, section "From WIT"; this file follows them.
//!
//! Order of the output: the world's imports, then its exports, in the order the
//! world lists them. Each interface contributes its type definitions (in WIT
//! order, anonymous tuples just before their first user), then itself.
//! World-level functions form one synthesized interface per side.
//!
//! Does not own: the patterns and memories WIT cannot express (`overlay`),
//! printing (`karmem_idl::print`), or checking (`karmem_idl::resolve`).

use std::collections::{HashMap, HashSet};

use anyhow::{Context as _, Result, anyhow, bail};
use karmem_idl::ast::{
    AttrKind, Docs, EnumCase, EnumDef, Evolution, Field, File, FlagCase, FlagsDef, FnSyntax,
    FunctionDef, HandleKind, Ident, IntWidth, InterfaceDef, Item, Member, Package, Param,
    Pattern, Prim, ResourceDef, Span, StructDef, TagWidth, TypeKind, TypeRef, UnionCase, UnionDef,
};
use wit_parser::{
    Function, FunctionKind, Handle, InterfaceId, Resolve, Type, TypeDefKind, TypeId, TypeOwner,
    WorldId, WorldItem, WorldKey,
};

use crate::arena;
use crate::names::{allocate, escape, ident, snake, unique, version_part};

/// Which side of the world an interface sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The component imports it: the host (or another module) implements it.
    Import,
    /// The component exports it: the component implements it.
    Export,
}

impl Side {
    pub fn keyword(self) -> &'static str {
        match self {
            Side::Import => "import",
            Side::Export => "export",
        }
    }
}

/// Where an output interface came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceOrigin {
    /// Its name in the output file.
    pub name: String,
    pub side: Side,
    /// Its WIT name: an interface id (`wasi:cli/stdout@0.2.6`), the kebab name of
    /// an inline interface, or for world-level functions the world's id.
    pub wit_name: String,
    /// Its functions, in file order (which is WIT order).
    pub functions: Vec<FunctionOrigin>,
}

/// Where an output function came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionOrigin {
    /// Its name in the output interface (`file_read`).
    pub name: String,
    /// Its WIT name as the component model spells it (`[method]file.read`).
    pub wit_name: String,
}

/// The result of importing one world.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The file, ready for `karmem_idl::resolve` and `karmem_idl::print`.
    pub file: File,
    /// Every interface of `file`, in file order, with its side and WIT name.
    pub interfaces: Vec<InterfaceOrigin>,
    /// The IDL name given to each WIT type that became an IDL item, by its id
    /// in [`Imported::resolve`].
    pub type_names: HashMap<TypeId, String>,
    /// The resolve the mapping read: the input's, with interfaces that are both
    /// imported and exported duplicated (`Resolve::generate_nominal_type_ids`),
    /// because their types are distinct types in the component model.
    pub resolve: Resolve,
}

/// The prefix of the doc line that records an interface's side and WIT name.
pub const ORIGIN_DOC_PREFIX: &str = "wit: ";

/// The word of a resource's origin doc line: `wit: resource output-stream`,
/// its WIT name (kebab-case).
pub const RESOURCE_ORIGIN: &str = "resource";

/// Reads a resource's WIT name back from its origin doc line.
pub fn resource_origin_of(resource: &karmem_idl::ast::ResourceDef) -> Option<&str> {
    resource.docs.0.first()?.strip_prefix(ORIGIN_DOC_PREFIX)?.strip_prefix(RESOURCE_ORIGIN)?.strip_prefix(' ')
}

/// Reads the origin doc line (`wit: import wasi:cli/stdout@0.2.6`) back from
/// an interface of an imported file.
pub fn origin_of(interface: &InterfaceDef) -> Option<(Side, String)> {
    let line = interface.docs.0.first()?.strip_prefix(ORIGIN_DOC_PREFIX)?;
    let (side, name) = line.split_once(' ')?;
    let side = match side {
        "import" => Side::Import,
        "export" => Side::Export,
        _ => return None,
    };
    Some((side, name.to_string()))
}

/// Maps `world` of `resolve` to a KarmemIDL file, WASI interfaces included.
pub fn import_world(resolve: &Resolve, world: WorldId) -> Result<Imported> {
    import(resolve, world, Wasi::Include)
}

/// Maps `world` of `resolve` to the KarmemIDL of its Karmem boundary: as
/// [`import_world`], without the WASI interfaces (packages `wasi:*`), which
/// never cross the Karmem boundary (docs/ABI.md §4). WASI types appear only
/// where a boundary interface uses them. Every name is the one
/// [`import_world`] gives, and neither depends on which WASI interfaces the
/// world has.
pub fn import_boundary(resolve: &Resolve, world: WorldId) -> Result<Imported> {
    import(resolve, world, Wasi::Omit)
}

/// Whether the output holds the world's WASI interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wasi {
    Include,
    Omit,
}

/// Whether `package` is the one `wit-component` gives the world it decodes
/// from a component binary, which has no package of its own.
pub fn is_decoded_component(package: &wit_parser::PackageName) -> bool {
    package.namespace == "root" && package.name == "component" && package.version.is_none()
}

/// Whether `package` is a WASI package (namespace `wasi`).
pub fn is_wasi_package(package: &wit_parser::PackageName) -> bool {
    package.namespace == "wasi"
}

fn import(resolve: &Resolve, world: WorldId, wasi: Wasi) -> Result<Imported> {
    // The one id that comes from the caller; every other id is read out of `resolve`.
    let world_name = resolve
        .worlds
        .get(world)
        .map(|w| w.name.clone())
        .context("the world to map is not a world of this WIT `Resolve`")?;
    let mut nominal = resolve.clone();
    nominal.generate_nominal_type_ids(world);
    let mut imported = Converter::new(&nominal, world, wasi)
        .run()
        .with_context(|| format!("failed to map WIT world `{world_name}` to KarmemIDL"))?;
    imported.resolve = nominal;
    Ok(imported)
}

/// One unit of output: an interface with its types, world-level types, or the
/// synthesized interface of world-level functions.
#[derive(Debug)]
enum Group {
    Interface { side: Side, key: WorldKey, id: InterfaceId, name: String },
    WorldType { id: TypeId },
    WorldFunctions { side: Side, functions: Vec<Function>, name: String },
}

struct Converter<'a> {
    resolve: &'a Resolve,
    world: WorldId,
    wasi: Wasi,
    /// Names of WASI groups and their types, given once every other group is
    /// out (`name_wasi`).
    deferred: Vec<(Vec<String>, Named)>,
    /// Names of inline (unnamed) interfaces: their world key.
    inline_interface_names: HashMap<InterfaceId, String>,
    /// IDL names of WIT types that become items.
    names: HashMap<TypeId, String>,
    /// Every name in use in the file.
    used: HashSet<String>,
    /// Anonymous tuples already named, by structure (the same tuple in two
    /// packages has two ids but one item).
    anonymous: HashMap<TypeDefKind, String>,
    defined: HashSet<TypeId>,
    items: Vec<Item>,
    origins: Vec<InterfaceOrigin>,
}

impl<'a> Converter<'a> {
    fn new(resolve: &'a Resolve, world: WorldId, wasi: Wasi) -> Converter<'a> {
        Converter {
            resolve,
            world,
            wasi,
            deferred: Vec::new(),
            inline_interface_names: HashMap::new(),
            names: HashMap::new(),
            used: HashSet::new(),
            anonymous: HashMap::new(),
            defined: HashSet::new(),
            items: Vec::new(),
            origins: Vec::new(),
        }
    }

    /// Emits every group but WASI's first, named without them, so that WASI
    /// never shapes another name (a WASI type a boundary interface uses is
    /// named where it is first used); then, when included, names and emits
    /// the WASI groups. The output keeps world order.
    fn run(mut self) -> Result<Imported> {
        let mut groups = self.plan()?;
        let mut out: Vec<Option<(Vec<Item>, Vec<InterfaceOrigin>)>> = groups.iter().map(|_| None).collect();
        let wasi: Vec<bool> = groups.iter().map(|g| self.is_wasi_group(g)).collect();
        for pass in [false, true] {
            if pass {
                if self.wasi == Wasi::Omit {
                    break;
                }
                self.name_wasi(&mut groups)?;
            }
            for (i, group) in groups.iter().enumerate() {
                if wasi.get(i).copied() != Some(pass) {
                    continue;
                }
                self.emit(group)?;
                let items = std::mem::take(&mut self.items);
                let origins = std::mem::take(&mut self.origins);
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some((items, origins));
                }
            }
        }
        let (mut items, mut interfaces) = (Vec::new(), Vec::new());
        for (group_items, group_origins) in out.into_iter().flatten() {
            items.extend(group_items);
            interfaces.extend(group_origins);
        }
        let package = self.package();
        Ok(Imported {
            file: File { package: Some(package), items },
            interfaces,
            type_names: self.names,
            resolve: Resolve::default(),
        })
    }

    // ---- planning: groups and names --------------------------------------

    /// Lists the output groups in world order and names every interface and
    /// every named type up front, so that later (anonymous) names never take a
    /// user's name.
    fn plan(&mut self) -> Result<Vec<Group>> {
        let world = arena::world(self.resolve, self.world);
        let mut groups = Vec::new();
        // (candidates, what gets the name)
        let mut entities: Vec<(Vec<String>, Named)> = Vec::new();
        let mut typed_interfaces: HashSet<InterfaceId> = HashSet::new();

        for (side, items) in [(Side::Import, &world.imports), (Side::Export, &world.exports)] {
            let mut functions = Vec::new();
            for (key, item) in items {
                match item {
                    WorldItem::Interface { id, .. } => {
                        if let (WorldKey::Name(name), None) = (key, &arena::interface(self.resolve, *id).name) {
                            self.inline_interface_names.insert(*id, name.clone());
                        }
                        let mut named = Vec::new();
                        named.push((self.interface_candidates(key, *id), Named::Group(groups.len())));
                        groups.push(Group::Interface { side, key: key.clone(), id: *id, name: String::new() });
                        if typed_interfaces.insert(*id) {
                            for &ty in arena::interface(self.resolve, *id).types.values() {
                                if let Some(candidates) = self.type_candidates(ty) {
                                    named.push((candidates, Named::Type(ty)));
                                }
                            }
                        }
                        if self.is_wasi_interface(*id) {
                            self.deferred.extend(named);
                        } else {
                            entities.extend(named);
                        }
                    }
                    WorldItem::Type { id, .. } => {
                        if let Some(candidates) = self.type_candidates(*id) {
                            entities.push((candidates, Named::Type(*id)));
                        }
                        groups.push(Group::WorldType { id: *id });
                    }
                    WorldItem::Function(f) => functions.push(f.clone()),
                }
            }
            if !functions.is_empty() {
                let base = match side {
                    Side::Import => format!("{}_imports", snake(&world.name)),
                    Side::Export => snake(&world.name),
                };
                entities.push((self.world_candidates(&base), Named::Group(groups.len())));
                groups.push(Group::WorldFunctions { side, functions, name: String::new() });
            }
        }

        self.give_names(entities, &mut groups)?;
        Ok(groups)
    }

    /// Names the WASI groups and their types that no other group named on
    /// first use, avoiding every name taken.
    fn name_wasi(&mut self, groups: &mut [Group]) -> Result<()> {
        let entities: Vec<(Vec<String>, Named)> = std::mem::take(&mut self.deferred)
            .into_iter()
            .filter(|(_, named)| !matches!(named, Named::Type(id) if self.names.contains_key(id)))
            .collect();
        self.give_names(entities, groups)
    }

    /// Allocates one name per entity (`names::allocate`) among the names not
    /// yet used, and records it.
    fn give_names(&mut self, entities: Vec<(Vec<String>, Named)>, groups: &mut [Group]) -> Result<()> {
        let candidates: Vec<Vec<String>> = entities.iter().map(|(c, _)| c.clone()).collect();
        let chosen = allocate(&candidates, &self.used);
        for ((_, named), name) in entities.into_iter().zip(chosen) {
            self.used.insert(name.clone());
            match named {
                Named::Type(id) => {
                    self.names.insert(id, name);
                }
                Named::Group(index) => match groups.get_mut(index) {
                    Some(Group::Interface { name: slot, .. } | Group::WorldFunctions { name: slot, .. }) => {
                        *slot = name;
                    }
                    _ => bail!("internal error: naming a group that does not exist"),
                },
            }
        }
        Ok(())
    }

    /// Whether `id` belongs to a WASI package.
    fn is_wasi_interface(&self, id: InterfaceId) -> bool {
        arena::interface(self.resolve, id)
            .package
            .is_some_and(|pkg| is_wasi_package(&arena::package(self.resolve, pkg).name))
    }

    fn is_wasi_group(&self, group: &Group) -> bool {
        matches!(group, Group::Interface { id, .. } if self.is_wasi_interface(*id))
    }

    /// What qualifies something owned by `owner`, most specific first:
    /// interface (or world), package, namespace; then the version.
    fn owner_qualifiers(&self, owner: TypeOwner) -> Qualifiers {
        match owner {
            TypeOwner::Interface(id) => self.interface_qualifiers(id),
            TypeOwner::World(id) => self.world_qualifiers(id),
            TypeOwner::None => Qualifiers::default(),
        }
    }

    fn interface_qualifiers(&self, id: InterfaceId) -> Qualifiers {
        let iface = arena::interface(self.resolve, id);
        let mut parts = Vec::new();
        match &iface.name {
            // The exported copy of an interface the world also imports.
            Some(name) if iface.clone_of.is_some() => parts.push(format!("{}_export", snake(name))),
            Some(name) => parts.push(snake(name)),
            None => {
                if let Some(name) = self.inline_interface_names.get(&id) {
                    parts.push(snake(name));
                }
                parts.push(snake(&arena::world(self.resolve, self.world).name));
            }
        }
        let package = self.package_qualifiers(iface.package);
        parts.extend(package.parts);
        Qualifiers { parts, version: package.version }
    }

    fn world_qualifiers(&self, id: WorldId) -> Qualifiers {
        let world = arena::world(self.resolve, id);
        let package = self.package_qualifiers(world.package);
        let mut parts = vec![snake(&world.name)];
        parts.extend(package.parts);
        Qualifiers { parts, version: package.version }
    }

    fn package_qualifiers(&self, pkg: Option<wit_parser::PackageId>) -> Qualifiers {
        let Some(pkg) = pkg else { return Qualifiers::default() };
        let name = &arena::package(self.resolve, pkg).name;
        Qualifiers {
            parts: vec![snake(&name.name), snake(&name.namespace)],
            version: name.version.as_ref().map(|v| version_part(&v.to_string())),
        }
    }

    fn interface_candidates(&self, key: &WorldKey, id: InterfaceId) -> Vec<String> {
        match key {
            WorldKey::Name(name) => self.world_qualifiers(self.world).candidates(&snake(name)),
            WorldKey::Interface(_) => {
                let mut qualifiers = self.interface_qualifiers(id);
                let base = if qualifiers.parts.is_empty() {
                    "interface".to_string()
                } else {
                    qualifiers.parts.remove(0)
                };
                qualifiers.candidates(&base)
            }
        }
    }

    fn world_candidates(&self, base: &str) -> Vec<String> {
        self.package_qualifiers(arena::world(self.resolve, self.world).package).candidates(base)
    }

    /// Name candidates for a type that becomes an item, or `None` for a type
    /// that is only an alias (resolved where it is used).
    fn type_candidates(&self, id: TypeId) -> Option<Vec<String>> {
        let def = arena::type_def(self.resolve, id);
        let name = def.name.as_ref()?;
        match def.kind {
            TypeDefKind::Record(_)
            | TypeDefKind::Variant(_)
            | TypeDefKind::Enum(_)
            | TypeDefKind::Flags(_)
            | TypeDefKind::Resource
            | TypeDefKind::Tuple(_) => Some(self.owner_qualifiers(def.owner).candidates(&snake(name))),
            _ => None,
        }
    }

    // ---- emission ---------------------------------------------------------

    fn emit(&mut self, group: &Group) -> Result<()> {
        match group {
            Group::Interface { side, key, id, name } => {
                let wit_name = self.resolve.name_world_key(key);
                let iface = arena::interface(self.resolve, *id);
                for (type_name, &ty) in &iface.types {
                    self.define(ty).with_context(|| format!("failed to map type `{type_name}` of `{wit_name}`"))?;
                }
                let functions: Vec<&Function> = iface.functions.values().collect();
                let members = self
                    .functions(name, &functions)
                    .with_context(|| format!("failed to map interface `{wit_name}`"))?;
                self.push_interface(name, *side, wit_name, members, &iface.docs);
            }
            Group::WorldType { id } => {
                let type_name = arena::type_def(self.resolve, *id).name.clone().unwrap_or_default();
                let world_name = &arena::world(self.resolve, self.world).name;
                self.define(*id)
                    .with_context(|| format!("failed to map type `{type_name}` of world `{world_name}`"))?;
            }
            Group::WorldFunctions { side, functions, name } => {
                let world = arena::world(self.resolve, self.world);
                let wit_name = self.world_id();
                let refs: Vec<&Function> = functions.iter().collect();
                let members = self
                    .functions(name, &refs)
                    .with_context(|| format!("failed to map the functions of world `{}`", world.name))?;
                let docs = wit_parser::Docs::default();
                self.push_interface(name, *side, wit_name, members, &docs);
            }
        }
        Ok(())
    }

    fn push_interface(
        &mut self,
        name: &str,
        side: Side,
        wit_name: String,
        (members, functions): (Vec<Member>, Vec<FunctionOrigin>),
        docs: &wit_parser::Docs,
    ) {
        let mut lines = vec![format!("{ORIGIN_DOC_PREFIX}{} {wit_name}", side.keyword())];
        lines.extend(docs_of(docs).0);
        self.items.push(Item::Interface(InterfaceDef {
            name: Ident::new(name),
            evolution: Evolution::Dynamic,
            pattern: Pattern::Direct,
            members,
            docs: Docs(lines),
            span: Span::DUMMY,
        }));
        self.origins.push(InterfaceOrigin { name: name.to_string(), side, wit_name, functions });
    }

    fn world_id(&self) -> String {
        let world = arena::world(self.resolve, self.world);
        match world.package {
            Some(pkg) => self.resolve.id_of_name(pkg, &world.name),
            None => world.name.clone(),
        }
    }

    /// The file's package: the world's, except for the world `wit-component`
    /// makes up when it decodes a component (`root:component`), where it is
    /// the package of the first exported interface not from WASI (else of
    /// the first such import) that has one: the component's own.
    fn package(&self) -> Package {
        let world = arena::world(self.resolve, self.world);
        let real = |pkg: wit_parser::PackageId| {
            let name = &arena::package(self.resolve, pkg).name;
            (format!("{}:{}", name.namespace, name.name), name.version.as_ref().map(|v| v.to_string()))
        };
        let (name, version) = match world.package {
            Some(pkg) if is_decoded_component(&arena::package(self.resolve, pkg).name) => {
                let own = |items: &wit_parser::IndexMap<WorldKey, WorldItem>| {
                    items.values().find_map(|item| match item {
                        WorldItem::Interface { id, .. } if !self.is_wasi_interface(*id) => arena::interface(self.resolve, *id)
                            .package
                            .filter(|p| !is_decoded_component(&arena::package(self.resolve, *p).name)),
                        _ => None,
                    })
                };
                real(own(&world.exports).or_else(|| own(&world.imports)).unwrap_or(pkg))
            }
            Some(pkg) => real(pkg),
            None => (world.name.clone(), None),
        };
        let mut lines = vec![format!("{ORIGIN_DOC_PREFIX}world {}", self.world_id())];
        lines.extend(docs_of(&world.docs).0);
        Package { name, version, docs: Docs(lines), span: Span::DUMMY }
    }

    /// Emits the item for `id` if it becomes one (once); checks aliases map.
    fn define(&mut self, id: TypeId) -> Result<()> {
        if self.defined.contains(&id) {
            return Ok(());
        }
        let def = arena::type_def(self.resolve, id);
        let Some(name) = self.names.get(&id).cloned() else {
            // An alias: nothing to declare, but what it names must map.
            let hint = def.name.as_deref().map(snake).unwrap_or_else(|| "anonymous".to_string());
            self.type_id(id, &hint)?;
            return Ok(());
        };
        self.defined.insert(id);
        let docs = docs_of(&def.docs);
        let item = match &def.kind {
            TypeDefKind::Record(record) => {
                let mut fields = Vec::new();
                for field in &record.fields {
                    let hint = format!("{name}_{}", snake(&field.name));
                    let ty = self
                        .ty(&field.ty, &hint)
                        .with_context(|| format!("failed to map field `{}` of record `{name}`", field.name))?;
                    fields.push(Field {
                        name: Ident::new(ident(&field.name)),
                        ty,
                        default: None,
                        docs: docs_of(&field.docs),
                        span: Span::DUMMY,
                    });
                }
                Item::Struct(StructDef { name: Ident::new(&name), evolution: Evolution::Dynamic, fields, docs, span: Span::DUMMY })
            }
            TypeDefKind::Tuple(tuple) => {
                let fields = self.tuple_fields(&name, &tuple.types)?;
                Item::Struct(StructDef { name: Ident::new(&name), evolution: Evolution::Inline, fields, docs, span: Span::DUMMY })
            }
            TypeDefKind::Variant(variant) => {
                let mut cases = Vec::new();
                for case in &variant.cases {
                    let hint = format!("{name}_{}", snake(&case.name));
                    let ty = match &case.ty {
                        Some(ty) => Some(
                            self.ty(ty, &hint)
                                .with_context(|| format!("failed to map case `{}` of variant `{name}`", case.name))?,
                        ),
                        None => None,
                    };
                    cases.push(UnionCase {
                        name: Ident::new(ident(&case.name)),
                        ty,
                        tag: None,
                        docs: docs_of(&case.docs),
                        span: Span::DUMMY,
                    });
                }
                Item::Union(UnionDef {
                    name: Ident::new(&name),
                    evolution: Evolution::Dynamic,
                    tag: union_tag_width(cases.len())?,
                    cases,
                    docs,
                    span: Span::DUMMY,
                })
            }
            TypeDefKind::Enum(e) => Item::Enum(EnumDef {
                name: Ident::new(&name),
                repr: enum_repr(e.cases.len())?,
                cases: e
                    .cases
                    .iter()
                    .map(|c| EnumCase { name: Ident::new(ident(&c.name)), value: None, docs: docs_of(&c.docs), span: Span::DUMMY })
                    .collect(),
                docs,
                span: Span::DUMMY,
            }),
            TypeDefKind::Flags(f) => Item::Flags(FlagsDef {
                name: Ident::new(&name),
                flags: f
                    .flags
                    .iter()
                    .map(|c| FlagCase { name: Ident::new(ident(&c.name)), docs: docs_of(&c.docs), span: Span::DUMMY })
                    .collect(),
                docs,
                span: Span::DUMMY,
            }),
            TypeDefKind::Resource => {
                // The WIT name, which names the resource's drop at the Karmem
                // boundary (docs/ABI.md §2, §4) whatever the item is called.
                let wit = def.name.clone().unwrap_or_default();
                let mut lines = vec![format!("{ORIGIN_DOC_PREFIX}{RESOURCE_ORIGIN} {wit}")];
                lines.extend(docs.0);
                Item::Resource(ResourceDef { name: Ident::new(&name), docs: Docs(lines), span: Span::DUMMY })
            }
            other => bail!("internal error: a `{}` was named as an item", other.as_str()),
        };
        refuse_repeated_members(&item)?;
        self.items.push(item);
        Ok(())
    }

    fn tuple_fields(&mut self, name: &str, types: &[Type]) -> Result<Vec<Field>> {
        let mut fields = Vec::new();
        for (i, ty) in types.iter().enumerate() {
            let hint = format!("{name}_{i}");
            let ty = self.ty(ty, &hint).with_context(|| format!("failed to map element {i} of tuple `{name}`"))?;
            fields.push(Field { name: Ident::new(format!("_{i}")), ty, default: None, docs: Docs::default(), span: Span::DUMMY });
        }
        Ok(fields)
    }

    /// The IDL type for a WIT type. `hint` names an anonymous tuple met inside it.
    fn ty(&mut self, ty: &Type, hint: &str) -> Result<TypeRef> {
        let prim = |p| Ok(TypeRef::new(TypeKind::Prim(p)));
        match ty {
            Type::Bool => prim(Prim::Bool),
            Type::U8 => prim(Prim::U8),
            Type::U16 => prim(Prim::U16),
            Type::U32 => prim(Prim::U32),
            Type::U64 => prim(Prim::U64),
            Type::S8 => prim(Prim::I8),
            Type::S16 => prim(Prim::I16),
            Type::S32 => prim(Prim::I32),
            Type::S64 => prim(Prim::I64),
            Type::F32 => prim(Prim::F32),
            Type::F64 => prim(Prim::F64),
            Type::Char => prim(Prim::Char),
            Type::String => Ok(string_type()),
            Type::ErrorContext => bail!("`error-context` cannot be mapped to KarmemIDL yet"),
            Type::Id(id) => self.type_id(*id, hint),
        }
    }

    fn type_id(&mut self, id: TypeId, hint: &str) -> Result<TypeRef> {
        let def = arena::type_def(self.resolve, id);
        let boxed = |t: TypeRef| Box::new(t);
        let kind = match &def.kind {
            TypeDefKind::Type(inner) => return self.ty(inner, hint),
            TypeDefKind::Record(_) | TypeDefKind::Variant(_) | TypeDefKind::Enum(_) | TypeDefKind::Flags(_) | TypeDefKind::Tuple(_) => {
                TypeKind::Named(Ident::new(self.item_name(id, hint)?))
            }
            TypeDefKind::Resource => TypeKind::Handle(HandleKind::Own, Ident::new(self.item_name(id, hint)?)),
            TypeDefKind::Handle(handle) => {
                let (kind, resource) = match handle {
                    Handle::Own(r) => (HandleKind::Own, *r),
                    Handle::Borrow(r) => (HandleKind::Borrow, *r),
                };
                let resource = self.resource_root(resource)?;
                TypeKind::Handle(kind, Ident::new(self.item_name(resource, hint)?))
            }
            TypeDefKind::Option(inner) => TypeKind::Option(boxed(self.ty(inner, hint)?)),
            TypeDefKind::Result(result) => {
                let ok = match &result.ok {
                    Some(t) => Some(boxed(self.ty(t, &format!("{hint}_ok"))?)),
                    None => None,
                };
                let err = match &result.err {
                    Some(t) => Some(boxed(self.ty(t, &format!("{hint}_err"))?)),
                    None => None,
                };
                TypeKind::Result { ok, err }
            }
            TypeDefKind::List(inner) => TypeKind::Array(boxed(self.ty(inner, hint)?)),
            TypeDefKind::FixedLengthList(inner, n) => TypeKind::FixedArray(boxed(self.ty(inner, hint)?), *n),
            TypeDefKind::Map(key, value) => {
                let key = self.ty(key, &format!("{hint}_key"))?;
                // wit-parser checks keys in WIT text; a decoded binary is checked here.
                if !karmem_idl::resolve::is_map_key(&key) {
                    bail!("a map key of type `{}` has no KarmemIDL form", karmem_idl::printer::type_ref(&key));
                }
                let value = self.ty(value, &format!("{hint}_value"))?;
                TypeKind::Map { key: boxed(key), value: boxed(value) }
            }
            TypeDefKind::Future(_) => bail!("`future` cannot be mapped to KarmemIDL yet"),
            TypeDefKind::Stream(_) => bail!("`stream` cannot be mapped to KarmemIDL yet"),
            TypeDefKind::Unknown => bail!("an unresolved WIT type cannot be mapped"),
        };
        Ok(TypeRef::new(kind))
    }

    /// Follows `use` aliases to the resource definition itself.
    fn resource_root(&self, mut id: TypeId) -> Result<TypeId> {
        for _ in 0..=self.resolve.types.len() {
            match &arena::type_def(self.resolve, id).kind {
                TypeDefKind::Type(Type::Id(next)) => id = *next,
                TypeDefKind::Resource => return Ok(id),
                other => bail!("a handle points at a `{}`, not a resource", other.as_str()),
            }
        }
        Err(anyhow!("a cycle of type aliases"))
    }

    /// The item name of `id`, declaring the item on first use. Anonymous tuples
    /// are named after `hint` (their owner path), made unique.
    fn item_name(&mut self, id: TypeId, hint: &str) -> Result<String> {
        if let Some(name) = self.names.get(&id).cloned() {
            self.define(id)?;
            return Ok(name);
        }
        let def = arena::type_def(self.resolve, id);
        let name = match &def.name {
            Some(name) => unique(&escape(snake(name)), &self.used),
            None => {
                if let Some(name) = self.anonymous.get(&def.kind) {
                    let name = name.clone();
                    self.names.insert(id, name.clone());
                    self.defined.insert(id);
                    return Ok(name);
                }
                let name = unique(&escape(hint.to_string()), &self.used);
                self.anonymous.insert(def.kind.clone(), name.clone());
                name
            }
        };
        self.used.insert(name.clone());
        self.names.insert(id, name.clone());
        self.define(id)?;
        Ok(name)
    }

    /// Interface functions, named so that none collide (see `function_candidates`).
    fn functions(&mut self, interface: &str, functions: &[&Function]) -> Result<(Vec<Member>, Vec<FunctionOrigin>)> {
        let mut candidates = Vec::new();
        for f in functions {
            candidates.push(self.function_candidates(f)?);
        }
        let names = allocate(&candidates, &HashSet::new());
        let mut members = Vec::new();
        let mut origins = Vec::new();
        for (f, name) in functions.iter().zip(names) {
            let def = self
                .function(interface, &name, f)
                .with_context(|| format!("failed to map function `{}`", f.name))?;
            members.push(Member::Function(def));
            origins.push(FunctionOrigin { name, wit_name: f.name.clone() });
        }
        Ok((members, origins))
    }

    /// Freestanding functions keep their name; resource functions are prefixed
    /// with the resource (`file_new`, `file_read`, `file_open`) and, if that
    /// collides, also with their kind (`file_constructor`, `file_method_read`,
    /// `file_static_open`).
    fn function_candidates(&self, f: &Function) -> Result<Vec<String>> {
        let resource_name = |r: TypeId| -> String {
            arena::type_def(self.resolve, r).name.as_deref().map(snake).unwrap_or_else(|| "resource".to_string())
        };
        let item = f.name.split_once('.').map_or(f.name.as_str(), |(_, item)| item);
        Ok(match f.kind {
            FunctionKind::Freestanding => vec![ident(&f.name)],
            FunctionKind::Constructor(r) => {
                let r = resource_name(r);
                vec![format!("{r}_new"), format!("{r}_constructor")]
            }
            FunctionKind::Method(r) => {
                let r = resource_name(r);
                vec![format!("{r}_{}", snake(item)), format!("{r}_method_{}", snake(item))]
            }
            FunctionKind::Static(r) => {
                let r = resource_name(r);
                vec![format!("{r}_{}", snake(item)), format!("{r}_static_{}", snake(item))]
            }
            FunctionKind::AsyncFreestanding | FunctionKind::AsyncMethod(_) | FunctionKind::AsyncStatic(_) => {
                bail!("async function `{}` cannot be mapped to KarmemIDL yet", f.name)
            }
        })
    }

    fn function(&mut self, interface: &str, name: &str, f: &Function) -> Result<FunctionDef> {
        let mut params = Vec::new();
        for p in &f.params {
            let hint = format!("{interface}_{name}_{}", snake(&p.name));
            let ty = self.ty(&p.ty, &hint).with_context(|| format!("failed to map parameter `{}`", p.name))?;
            params.push(Param { name: Some(Ident::new(ident(&p.name))), ty, memory: None, span: Span::DUMMY });
        }
        let mut results = Vec::new();
        if let Some(result) = &f.result {
            let hint = format!("{interface}_{name}_ret");
            let ty = self.ty(result, &hint).context("failed to map the result")?;
            results.push(Param { name: Some(Ident::new(RESULT_NAME)), ty, memory: None, span: Span::DUMMY });
        }
        Ok(FunctionDef {
            name: Ident::new(name),
            syntax: FnSyntax::Named,
            params,
            results,
            docs: docs_of(&f.docs),
            span: Span::DUMMY,
        })
    }
}

/// The name parts that can qualify a base name, most specific first.
#[derive(Debug, Default)]
struct Qualifiers {
    parts: Vec<String>,
    version: Option<String>,
}

impl Qualifiers {
    /// `base`, `q1_base`, `q2_q1_base`, ..., then the longest with `_v1_2_3`.
    fn candidates(&self, base: &str) -> Vec<String> {
        let mut name = base.to_string();
        let mut out = vec![escape(name.clone())];
        for part in &self.parts {
            name = format!("{part}_{name}");
            out.push(name.clone());
        }
        if let Some(version) = &self.version {
            out.push(format!("{name}_{version}"));
        }
        out
    }
}

/// What a name chosen in `plan` is for.
#[derive(Debug, Clone, Copy)]
enum Named {
    Type(TypeId),
    Group(usize),
}

/// The name of a function's single result.
pub const RESULT_NAME: &str = "ret";

/// `[]u8 #string`.
pub fn string_type() -> TypeRef {
    TypeRef::new(TypeKind::Array(Box::new(TypeRef::new(TypeKind::Prim(Prim::U8))))).with_attr(AttrKind::String)
}

/// The narrowest tag that holds `cases` tags counted from 1.
pub fn union_tag_width(cases: usize) -> Result<TagWidth> {
    let n = u64::try_from(cases).unwrap_or(u64::MAX);
    [TagWidth::U8, TagWidth::U16, TagWidth::U32]
        .into_iter()
        .find(|w| n <= w.max())
        .ok_or_else(|| anyhow!("a variant with {cases} cases has too many cases for a u32 tag"))
}

/// The narrowest representation that holds `cases` values counted from 0 —
/// the canonical ABI's discriminant type for the same count.
pub fn enum_repr(cases: usize) -> Result<IntWidth> {
    let n = u64::try_from(cases).unwrap_or(u64::MAX);
    [IntWidth::U8, IntWidth::U16, IntWidth::U32]
        .into_iter()
        .find(|w| n.saturating_sub(1) <= w.max())
        .ok_or_else(|| anyhow!("an enum with {cases} cases is too large"))
}

/// WIT doc text to IDL doc lines (trailing blanks trimmed, so printing is stable).
fn docs_of(docs: &wit_parser::Docs) -> Docs {
    match &docs.contents {
        None => Docs::default(),
        Some(text) => Docs(text.lines().map(|l| l.trim_end().to_string()).collect()),
    }
}

/// wit-parser accepts a record, variant, enum or flags that lists one name twice
/// (found by the `wit_import` fuzz target); KarmemIDL does not, so refuse it here
/// with the WIT item named rather than emit IDL that fails to resolve.
fn refuse_repeated_members(item: &Item) -> Result<()> {
    let (kind, members): (&str, Vec<&str>) = match item {
        Item::Struct(d) => ("record", d.fields.iter().map(|f| f.name.name.as_str()).collect()),
        Item::Union(d) => ("variant", d.cases.iter().map(|c| c.name.name.as_str()).collect()),
        Item::Enum(d) => ("enum", d.cases.iter().map(|c| c.name.name.as_str()).collect()),
        Item::Flags(d) => ("flags", d.flags.iter().map(|c| c.name.name.as_str()).collect()),
        Item::Resource(_) | Item::Interface(_) => return Ok(()),
    };
    let mut seen = std::collections::HashSet::new();
    for member in members {
        if !seen.insert(member) {
            bail!("{kind} `{}` lists `{member}` more than once", item.name().name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_follow_the_case_count() -> Result<()> {
        // Union tags count from 1: 255 cases end at tag 255.
        assert_eq!(union_tag_width(255)?, TagWidth::U8);
        assert_eq!(union_tag_width(256)?, TagWidth::U16);
        assert_eq!(union_tag_width(65_535)?, TagWidth::U16);
        assert_eq!(union_tag_width(65_536)?, TagWidth::U32);
        // Enum values count from 0, like the canonical ABI discriminant.
        assert_eq!(enum_repr(1)?, IntWidth::U8);
        assert_eq!(enum_repr(256)?, IntWidth::U8);
        assert_eq!(enum_repr(257)?, IntWidth::U16);
        assert_eq!(enum_repr(65_537)?, IntWidth::U32);
        Ok(())
    }

    #[test]
    fn origin_lines_read_back() {
        let iface = InterfaceDef {
            name: Ident::new("stdout"),
            evolution: Evolution::Dynamic,
            pattern: Pattern::Direct,
            members: Vec::new(),
            docs: Docs(vec!["wit: import wasi:cli/stdout@0.2.6".into(), "More docs.".into()]),
            span: Span::DUMMY,
        };
        assert_eq!(origin_of(&iface), Some((Side::Import, "wasi:cli/stdout@0.2.6".to_string())));
    }
}
