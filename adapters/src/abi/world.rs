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
//! the order `karmem-wit-import` emits them in.
//!
//! Does not own: the WIT -> IDL mapping itself (`karmem-wit-import`).

use anyhow::{Context, Result, anyhow, bail, ensure};
use karmem_idl::Schema;
use karmem_idl::ast::Item;
use karmem_wit_import::Side;
use wit_parser::{Resolve, WorldId, WorldItem};

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

/// One interface: its IDL name, side, and functions.
#[derive(Debug, Clone)]
pub struct InterfaceBinding {
    pub name: String,
    pub side: Side,
    /// The core import module of the interface's functions (imports only).
    pub core_module: String,
    pub functions: Vec<FunctionBinding>,
}

/// One function: IDL name and core name (export name, or import field).
#[derive(Debug, Clone)]
pub struct FunctionBinding {
    pub name: String,
    pub core_name: String,
}

impl World {
    /// The world `world` of `resolve`, named as the lowering names it.
    pub fn from_wit(resolve: &Resolve, world: WorldId) -> Result<World> {
        World::from_imported(resolve, world, karmem_wit_import::import_world(resolve, world)?)
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
            let found = items.iter().find_map(|(key, item)| match item {
                WorldItem::Interface { id, .. } if resolve.name_world_key(key) == origin.wit_name => Some(*id),
                _ => None,
            });
            match found {
                Some(id) => {
                    let iface = resolve.interfaces.get(id).context("an interface is not in the resolve")?;
                    wit_functions.extend(iface.functions.keys().cloned());
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
            interfaces.push(InterfaceBinding { name: origin.name.clone(), side: origin.side, core_module, functions });
        }
        Ok(World { schema, idl, interfaces })
    }

    /// [`World::from_wit`] for the world embedded in a component binary.
    pub fn from_component(component: &[u8]) -> Result<World> {
        let loaded = karmem_wit_import::load_wasm(component, None).context("failed to read the component's world")?;
        World::from_wit(&loaded.resolve, loaded.world)
    }
}
