//! KarmemIDL, the interface description language of Karmem.
//!
//! Owns: the syntax tree (`ast`), the lexer and parser with byte spans, the
//! resolver that turns a file into a checked [`Schema`], diagnostics rendered as
//! source snippets with a caret, the printer behind `fmt`, and the schema
//! compatibility checker behind `compat`.
//!
//! Does not own: the binary layout (`karmem-format`) or WIT (`karmem-wit-import`).

pub mod ast;
pub mod schema;

pub use schema::Schema;
