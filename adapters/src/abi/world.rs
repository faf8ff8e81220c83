//! Which core functions of a canonical-ABI module are which KarmemIDL
//! functions: the input of [`super::karmem_abi`] besides the module.
//!
//! Owns: [`World`] (the schema, its text, and every interface with its side
//! and functions bound to core names) and [`World::from_wit`] /
//! [`World::from_imported`], which build
//! it from a WIT world the way `karmem-core-lowering` names its boundary:
//! exports `<interface id>#<function>` (world-level functions: `<function>`),
//! imports module `<interface id>` (world-level: `$root`), field
//! `<function>`. IDL functions are matched to WIT functions by position,
//! the order `karmem-wit-import` emits them in. WASI interfaces are left
//! out: they never cross the Karmem boundary.
//!
//! Does not own: the WIT -> IDL mapping itself (`karmem-wit-import`).

use anyhow::{Context, Result, anyhow, bail, ensure};
// The prefix of a resource-drop function's name: the canonical ABI's, which
// the Karmem ABI keeps (docs/ABI.md §2, §4).
use karmem_contract::RESOURCE_DROP;
use karmem_idl::Schema;
use karmem_idl::ast::Item;
use karmem_wit_import::Side;
use wit_parser::{Resolve, WorldId, WorldItem, WorldKey};

/// The resources `origin` defines: (WIT name, KarmemIDL name), read from the
/// resolve the mapping named them in.
fn resources_of(
    imported: &karmem_wit_import::Imported,
    world: WorldId,
    origin: &karmem_wit_import::InterfaceOrigin,
) -> Result<Vec<(String, String)>> {
    let resolve = &imported.resolve;
    let w = resolve.worlds.get(world).context("the world is not in the mapped resolve")?;
    let items = match origin.side {
        Side::Import => &w.imports,
        Side::Export => &w.exports,
    };
    let Some(id) = items.iter().find_map(|(key, item)| match item {
        WorldItem::Interface { id, .. } if resolve.name_world_key(key) == origin.wit_name => Some(*id),
        _ => None,
    }) else {
        return Ok(Vec::new());
    };
    let iface = resolve.interfaces.get(id).context("an interface is not in the mapped resolve")?;
    let mut out = Vec::new();
    for (name, &ty) in &iface.types {
        let def = resolve.types.get(ty).context("a type is not in the mapped resolve")?;
        if matches!(def.kind, wit_parser::TypeDefKind::Resource) {
            let idl = imported
                .type_names
                .get(&ty)
                .with_context(|| format!("resource `{name}` of `{}` has no KarmemIDL name", origin.wit_name))?;
            out.push((name.clone(), idl.clone()));
        }
    }
    Ok(out)
}

/// The import module of world-level functions in a lowered module.
pub const ROOT_MODULE: &str = "$root";

/// A component's interfaces, bound to a canonical-ABI module.
#[derive(Debug, Clone)]
pub struct World {
    /// The resolved KarmemIDL of the world.
    pub schema: Schema,
    /// Its text, embedded as the `karmem:idl` custom section.
    pub idl: String,
    pub interfaces: Vec<InterfaceBinding>,
}

/// One interface: its IDL name, side, WIT identity and functions.
#[derive(Debug, Clone)]
pub struct InterfaceBinding {
    pub name: String,
    pub side: Side,
    /// Its name in the lowered module's canonical boundary: the WIT
    /// interface id (`karmem:fixtures/types`), or the world's id for
    /// world-level functions.
    pub wit_name: String,
    /// What the interface is in WIT (the descriptor's `wit_*` fields).
    pub wit: WitIdentity,
    /// The resources the interface defines, by WIT name (kebab-case) and
    /// KarmemIDL name: their drops cross as `[resource-drop]<WIT name>`,
    /// the same in every module (docs/ABI.md §2, §4).
    pub resources: Vec<(String, String)>,
    /// The core import module of the interface's functions (imports only).
    pub core_module: String,
    pub functions: Vec<FunctionBinding>,
}

/// The WIT identity of an interface (docs/ABI.md §5): each part is empty
/// when it has none (world-level functions have no interface; an interface
/// declared inline in a world, or in a component's made-up world
/// `root:component`, has no package).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WitIdentity {
    /// `namespace:name`, without the version.
    pub package: String,
    /// The interface's WIT name (kebab-case).
    pub interface: String,
    /// The package's semver.
    pub version: String,
}

impl WitIdentity {
    /// `namespace:name@version` (or without `@version`), empty without a package.
    pub fn package_with_version(&self) -> String {
        match (self.package.as_str(), self.version.as_str()) {
            ("", _) => String::new(),
            (package, "") => package.to_string(),
            (package, version) => format!("{package}@{version}"),
        }
    }
}

/// One function: IDL name and core name (export name, or import field).
#[derive(Debug, Clone)]
pub struct FunctionBinding {
    pub name: String,
    pub core_name: String,
}

impl World {
    /// The world `world` of `resolve`, named as the lowering names it: its
    /// Karmem boundary, without WASI (`karmem_wit_import::import_boundary`).
    pub fn from_wit(resolve: &Resolve, world: WorldId) -> Result<World> {
        World::from_imported(resolve, world, karmem_wit_import::import_boundary(resolve, world)?)
    }

    /// [`World::from_wit`] for a mapping of `world` the caller already has,
    /// possibly changed by an overlay (patterns, interface memories,
    /// placements: the functions stay the same).
    pub fn from_imported(resolve: &Resolve, world: WorldId, imported: karmem_wit_import::Imported) -> Result<World> {
        let idl = karmem_idl::print(&imported.file);
        let schema = karmem_idl::resolve(imported.file.clone()).map_err(|errors| {
            anyhow!("the IDL of the world does not resolve: {}", errors.first().map(|e| e.to_string()).unwrap_or_default())
        })?;
        let w = resolve.worlds.get(world).context("the world is not in the resolve")?;
        let mut interfaces = Vec::new();
        for origin in &imported.interfaces {
            let Some(Item::Interface(def)) = schema.get(&origin.name) else {
                bail!("interface `{}` is missing from the IDL", origin.name);
            };
            let items = match origin.side {
                Side::Import => &w.imports,
                Side::Export => &w.exports,
            };
            // the WIT functions of this interface, in the order wit-import emits them
            let mut wit_functions: Vec<String> = Vec::new();
            let mut is_world_level = false;
            let mut wit = WitIdentity::default();
            let mut resources = Vec::new();
            let found = items.iter().find_map(|(key, item)| match item {
                WorldItem::Interface { id, .. } if resolve.name_world_key(key) == origin.wit_name => Some((key, *id)),
                _ => None,
            });
            match found {
                Some((key, id)) => {
                    let iface = resolve.interfaces.get(id).context("an interface is not in the resolve")?;
                    let package = iface.package.and_then(|p| resolve.packages.get(p)).map(|p| &p.name);
                    // WASI never crosses the Karmem boundary (docs/ABI.md §4)
                    if package.is_some_and(karmem_wit_import::is_wasi_package) {
                        continue;
                    }
                    wit.interface = match (&iface.name, key) {
                        (Some(name), _) | (None, WorldKey::Name(name)) => name.clone(),
                        (None, WorldKey::Interface(_)) => String::new(),
                    };
                    // an interface declared inline in a world is the world's,
                    // not its package's: it has no package of its own
                    let package = package.filter(|p| iface.name.is_some() && !karmem_wit_import::is_decoded_component(p));
                    if let Some(package) = package {
                        wit.package = format!("{}:{}", package.namespace, package.name);
                        wit.version = package.version.as_ref().map(|v| v.to_string()).unwrap_or_default();
                    }
                    wit_functions.extend(iface.functions.keys().cloned());
                    resources = resources_of(&imported, world, origin)?;
                }
                None => {
                    is_world_level = true;
                    for item in items.values() {
                        if let WorldItem::Function(f) = item {
                            wit_functions.push(f.name.clone());
                        }
                    }
                }
            }
            let idl_functions: Vec<String> = def.functions().map(|f| f.name.name.clone()).collect();
            ensure!(
                idl_functions.len() == wit_functions.len(),
                "interface `{}` has {} IDL functions but {} WIT functions",
                origin.name,
                idl_functions.len(),
                wit_functions.len()
            );
            let functions = idl_functions
                .into_iter()
                .zip(wit_functions)
                .map(|(name, wit)| FunctionBinding {
                    name,
                    core_name: match (origin.side, is_world_level) {
                        (Side::Export, false) => format!("{}#{wit}", origin.wit_name),
                        _ => wit,
                    },
                })
                .collect();
            let core_module = if is_world_level { ROOT_MODULE.to_string() } else { origin.wit_name.clone() };
            interfaces.push(InterfaceBinding {
                name: origin.name.clone(),
                side: origin.side,
                wit_name: origin.wit_name.clone(),
                wit,
                resources,
                core_module,
                functions,
            });
        }
        Ok(World { schema, idl, interfaces })
    }

    /// The exports that drop handles of the resources of exported
    /// interfaces: (as the lowering names them, `<WIT interface
    /// id>#[resource-drop]<WIT name>`; as the Karmem ABI does,
    /// `<interface>.[resource-drop]<WIT name>` with the interface's
    /// KarmemIDL name, docs/ABI.md §2).
    pub fn resource_drop_exports(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for iface in self.interfaces.iter().filter(|i| i.side == Side::Export) {
            for (wit, _) in &iface.resources {
                out.push((format!("{}#{RESOURCE_DROP}{wit}", iface.wit_name), format!("{}.{RESOURCE_DROP}{wit}", iface.name)));
            }
        }
        out
    }

    /// [`World::from_wit`] for the world embedded in a component binary.
    pub fn from_component(component: &[u8]) -> Result<World> {
        let loaded = karmem_wit_import::load_wasm(component, None).context("failed to read the component's world")?;
        World::from_wit(&loaded.resolve, loaded.world)
    }
}
