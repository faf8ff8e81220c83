//! Lookups in the id_arena tables of a `wit_parser::Resolve` (`types`,
//! `interfaces`, `worlds`, `packages`).
//!
//! Owns: the only place wit-import indexes those tables. Every id it is given
//! was read out of the same `Resolve` (a world's items, a type's fields, an
//! interface's owner, ...), so the lookup cannot miss; ids that arrive from a
//! caller (`import_world`'s world, `AbiType::from_wit`'s type) are checked
//! with `get` where they enter, before they reach here.
//!
//! Does not own: what the entries mean (`convert`, `abi`, `load`).

#![allow(
    clippy::indexing_slicing,
    reason = "arena lookups with ids read out of the same `Resolve`, which cannot miss (see the module docs)"
)]

use wit_parser::{Interface, InterfaceId, Package, PackageId, Resolve, TypeDef, TypeId, World, WorldId};

pub(crate) fn type_def(resolve: &Resolve, id: TypeId) -> &TypeDef {
    &resolve.types[id]
}

pub(crate) fn interface(resolve: &Resolve, id: InterfaceId) -> &Interface {
    &resolve.interfaces[id]
}

pub(crate) fn world(resolve: &Resolve, id: WorldId) -> &World {
    &resolve.worlds[id]
}

pub(crate) fn package(resolve: &Resolve, id: PackageId) -> &Package {
    &resolve.packages[id]
}
