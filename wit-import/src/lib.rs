//! WIT to KarmemIDL.
//!
//! Owns: the deterministic mapping from a `wit_parser::Resolve` and one world to
//! a `karmem_idl` schema, with the overlay for patterns and shared memories.
//!
//! Does not own: parsing KarmemIDL (`karmem-idl`) or decoding component binaries
//! beyond handing them to `wit-component`.
