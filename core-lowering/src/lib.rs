//! Component to one core module.
//!
//! Owns: parsing a component into an instance graph, resolving every core
//! import to its provider, and merging all instantiated core modules into one
//! (with walrus), canonical builtins included.
//!
//! Does not own: the Karmem ABI at the module's edge (`karmem-adapters`).
