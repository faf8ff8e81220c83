//! The Karmem binary format.
//!
//! Owns: the byte layout of every KarmemIDL construct, zero-copy bounds-checked
//! views, the top-down builder, the validator with limits, and (with the
//! `schema` feature) the schema-driven layout engine and dynamic `Value` codec.
//! The core is `no_std`; `alloc` and `std` add the builder and codec.
//!
//! Does not own: the IDL itself (`karmem-idl`) or any wasm.
#![no_std]
#![allow(unsafe_code)] // zero-copy views; every block carries a SAFETY comment
