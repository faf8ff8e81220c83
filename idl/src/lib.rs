//! KarmemIDL, the interface description language of Karmem.
//!
//! Owns: the syntax tree (`ast`), the lexer and parser with byte spans, the
//! resolver that turns a file into a checked [`Schema`], diagnostics rendered as
//! source snippets with a caret, the printer behind `fmt`, and the schema
//! compatibility checker behind `compat`.
//!
//! Does not own: the binary layout (`karmem-format`) or WIT (`karmem-wit-import`).

pub mod ast;
pub mod compat;
pub mod diagnostic;
pub mod error;
pub mod lexer;
pub mod parser;
pub mod printer;
pub mod resolve;
pub mod schema;

pub use diagnostic::Diagnostics;
pub use error::{Error, ErrorKind};
pub use schema::Schema;

/// Parses a file; stops at the first syntax error.
pub fn parse(source: &str) -> Result<ast::File, Error> {
    parser::parse(source)
}

/// Checks a parsed file, reporting every problem found (sorted by position).
pub fn resolve(file: ast::File) -> Result<Schema, Vec<Error>> {
    resolve::resolve(file)
}

/// Prints a file in canonical form (what `karmem-bridge fmt` writes).
pub fn print(file: &ast::File) -> String {
    printer::print(file)
}

/// Parses `source` (named `path` in diagnostics), rendering a syntax error.
pub fn parse_file(source: &str, path: &str) -> Result<ast::File, Diagnostics> {
    parse(source).map_err(|e| Diagnostics::new(vec![e], path, source))
}

/// Parses and resolves `source` (named `path` in diagnostics), rendering errors.
pub fn load(source: &str, path: &str) -> Result<Schema, Diagnostics> {
    let file = parse_file(source, path)?;
    resolve(file).map_err(|errors| Diagnostics::new(errors, path, source))
}
