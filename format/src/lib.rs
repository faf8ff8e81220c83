//! The Karmem binary format.
//!
//! Owns: the byte layout of every KarmemIDL construct (`docs/FORMAT.md`),
//! zero-copy bounds-checked views, the top-down builder, the validator with
//! limits, and (with the `schema` feature) the schema-driven layout engine,
//! the dynamic [`Value`] codec and WAVE text for values.
//! The core (`raw`, `view`, `error`, and the typed reads of `typed` that
//! generated code uses) is `no_std` without allocation; `alloc` adds the
//! builder and typed writes; `schema` (which needs `std`) adds everything driven by a
//! `karmem_idl::Schema`.
//!
//! Does not own: the IDL itself (`karmem-idl`), the compatibility rules
//! (`karmem_idl::compat`; [`compat`] applies them to one function for the ABI
//! handshake), or any wasm.
//!
//! ```
//! # #[cfg(feature = "schema")] {
//! use std::sync::Arc;
//! use karmem_format::{Layout, Limits, value, wave};
//!
//! let file = karmem_idl::parse("struct point (dynamic) { x: f32; tags: []u8 #string; }").unwrap();
//! let layout = Arc::new(Layout::new(&karmem_idl::resolve(file).unwrap()).unwrap());
//! let point = layout.named("point").unwrap();
//! let ty = wave::ValueType::new(layout.clone(), point);
//! let v = wave::parse(&ty, r#"{x: 1.5, tags: "ab"}"#).unwrap();
//! let bytes = value::encode(&layout, point, &v).unwrap();
//! let back = value::decode(&layout, point, &bytes, &Limits::default()).unwrap();
//! assert_eq!(wave::print(&back).unwrap(), r#"{x: 1.5, tags: "ab"}"#);
//! # }
//! ```
#![no_std]
#![allow(unsafe_code)] // zero-copy views; every block carries a SAFETY comment

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod error;
pub mod raw;
pub mod typed;
pub mod view;

#[cfg(feature = "alloc")]
pub mod builder;
#[cfg(feature = "alloc")]
pub mod check;

#[cfg(feature = "schema")]
pub mod access;
#[cfg(feature = "schema")]
pub mod compat;
#[cfg(feature = "schema")]
pub mod gen_rust;
#[cfg(feature = "schema")]
pub mod gen_go;
#[cfg(feature = "schema")]
pub mod gen_ts;
#[cfg(feature = "schema")]
pub mod layout;
#[cfg(feature = "schema")]
pub mod validate;
#[cfg(feature = "schema")]
pub mod value;
#[cfg(feature = "schema")]
pub mod wave;

pub use error::{Error, ErrorKind};
pub use view::{Column, DynamicStruct, Message, Slot, Soa};

#[cfg(feature = "alloc")]
pub use builder::{AlignedBuf, Builder, PlacedBytes};
#[cfg(feature = "alloc")]
pub use check::Limits;

#[cfg(feature = "schema")]
pub use access::{View, access, access_unchecked};
#[cfg(feature = "schema")]
pub use layout::{Layout, LayoutError, TypeId};
#[cfg(feature = "schema")]
pub use validate::validate;
#[cfg(feature = "schema")]
pub use value::Value;
