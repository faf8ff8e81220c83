//! WIT to KarmemIDL.
//!
//! Owns: the deterministic mapping from a `wit_parser::Resolve` and one world to
//! a `karmem_idl` syntax tree (`convert`, naming in `names`), reading the inputs
//! `karmem-bridge idl` accepts (`load`), the overlay for patterns and shared
//! memories (`overlay`), and the way back from an IDL type to its canonical ABI
//! shape that the adapters use (`abi`). The mapping is documented in
//! `docs/IDL.md`, section "From WIT".
//!
//! Does not own: parsing, resolving or printing KarmemIDL (`karmem-idl`), or
//! decoding component binaries beyond handing them to `wit-component`.
//!
//! ```
//! let loaded = karmem_wit_import::load_wit_text(
//!     "hello.wit",
//!     "package demo:hello@1.0.0;\n\
//!      interface greet { greet: func(name: string) -> string; }\n\
//!      world hello { export greet; }",
//!     None,
//! )?;
//! let imported = karmem_wit_import::import_world(&loaded.resolve, loaded.world)?;
//! let package = imported.file.package.as_ref().map(|p| p.name.as_str());
//! assert_eq!(package, Some("demo:hello"));
//! assert_eq!(imported.interfaces[0].name, "greet");
//! # Ok::<(), anyhow::Error>(())
//! ```

pub mod abi;
mod arena;
pub mod convert;
pub mod load;
pub mod names;
pub mod overlay;
pub mod view;

pub use abi::{AbiType, FlatType};
pub use convert::{FunctionOrigin, Imported, InterfaceOrigin, Side, import_boundary, import_world, is_decoded_component, is_wasi_package, origin_of, resource_origin_of};
pub use load::{LoadedWorld, in_guarded_parse, load_path, load_wasm, load_wit_text};
pub use overlay::Overlay;

/// Loads `path`, maps the chosen world and applies `overlay`: the whole of
/// `karmem-bridge idl` short of printing.
pub fn import_path(
    path: &std::path::Path,
    world: Option<&str>,
    overlay: &Overlay,
) -> anyhow::Result<Imported> {
    let loaded = load_path(path, world)?;
    let mut imported = import_world(&loaded.resolve, loaded.world)?;
    overlay.apply(&mut imported)?;
    Ok(imported)
}
