//! KarmemIDL, the interface description language of Karmem.
//!
//! Owns: the syntax tree (`ast`), the lexer and parser with byte spans, the
//! resolver that turns a file into a checked [`Schema`], diagnostics rendered as
//! source snippets with a caret, the printer behind `fmt`, and the schema
//! compatibility checker behind `compat`.
//!
//! Does not own: the binary layout (`karmem-format`) or WIT (`karmem-wit-import`).
//! The language is specified in `docs/IDL.md`.
//!
//! ```
//! let source = "struct point (inline) {\n    x: f32;\n    y: f32;\n}\n";
//! let schema = karmem_idl::load(source, "point.km").expect("a valid schema");
//! assert!(schema.get("point").is_some());
//! assert_eq!(karmem_idl::print(schema.file()), source);
//!
//! let error = karmem_idl::load("struct p (inline) { x: f23; }", "p.km").unwrap_err();
//! assert_eq!(
//!     error.to_report(),
//!     "error: unknown type `f23`\n --> p.km:1:24\n  |\n1 | struct p (inline) { x: f23; }\n  |                        ^^^"
//! );
//! ```

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
