//! Structured errors of the lexer, parser and resolver, each with a byte span.
//!
//! Owns: the error kinds and their messages. Rendering them as source snippets
//! is `diagnostic`'s job.

use std::fmt;

use crate::ast::Span;

/// One problem in a `.km` file: what went wrong and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    pub kind: ErrorKind,
    /// Where the caret goes.
    pub span: Span,
    /// A secondary location, e.g. the first definition of a duplicate name.
    pub note: Option<(Span, String)>,
}

impl Error {
    pub fn new(kind: ErrorKind, span: Span) -> Error {
        Error {
            kind,
            span,
            note: None,
        }
    }

    pub fn with_note(mut self, span: Span, note: impl Into<String>) -> Error {
        self.note = Some((span, note.into()));
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for Error {}

/// What went wrong. The `Display` text is the diagnostic's headline.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ErrorKind {
    // --- lexer ---
    UnexpectedChar(char),
    UnterminatedString,
    UnterminatedChar,
    BadEscape(String),
    BadNumber(String),
    // --- parser ---
    /// `expected` describes what the grammar allows here; `found` the token met.
    Expected {
        expected: String,
        found: String,
    },
    TooDeep {
        max: u32,
    },
    // --- resolver ---
    UnknownType(String),
    /// `what` is "item", "field", "case", "flag" or "member".
    Duplicate {
        what: &'static str,
        name: String,
    },
    /// `implicit` when the tag was counted up rather than written.
    DuplicateTag {
        case: String,
        tag: u64,
        first: String,
        implicit: bool,
    },
    DuplicateValue {
        case: String,
        value: u64,
        first: String,
        implicit: bool,
    },
    ReservedTag {
        case: String,
    },
    /// `what` is "tag" or "value".
    TagOutOfRange {
        what: &'static str,
        tag: u64,
        width: &'static str,
        max: u64,
    },
    TooManyPages {
        name: String,
        pages: u32,
        max: u32,
    },
    ImplicitValueOverflow {
        case: String,
        width: &'static str,
    },
    RecursiveInline {
        path: Vec<String>,
    },
    UnknownMemory(String),
    /// `#attr` on a type that does not accept it; `reason` says what would.
    BadAttr {
        attr: &'static str,
        reason: String,
    },
    ConflictingAttrs {
        first: &'static str,
        second: &'static str,
    },
    BadDefault {
        reason: String,
    },
    NotAResource(String),
    NotAType {
        name: String,
        what: &'static str,
    },
    ZeroLengthArray,
    /// A map key that is not a component-model key type; `found` is the key as written.
    BadMapKey(String),
    EmptyItem {
        what: &'static str,
        name: String,
    },
    ZeroPages(String),
    DuplicatePackage,
    PackageNotFirst,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::UnexpectedChar(c) => {
                write!(f, "unexpected character `{}`", c.escape_debug())
            }
            ErrorKind::UnterminatedString => write!(f, "unterminated string literal"),
            ErrorKind::UnterminatedChar => write!(f, "unterminated character literal"),
            ErrorKind::BadEscape(s) => write!(f, "invalid escape `{s}`"),
            ErrorKind::BadNumber(s) => write!(f, "invalid number `{s}`"),
            ErrorKind::Expected { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            ErrorKind::TooDeep { max } => write!(f, "type nested more than {max} levels deep"),
            ErrorKind::UnknownType(name) => write!(f, "unknown type `{name}`"),
            ErrorKind::Duplicate { what, name } => write!(f, "duplicate {what} `{name}`"),
            ErrorKind::DuplicateTag {
                case,
                tag,
                first,
                implicit: true,
            } => {
                write!(
                    f,
                    "case `{case}` gets the implicit tag {tag}, already used by case `{first}`"
                )
            }
            ErrorKind::DuplicateTag {
                case,
                tag,
                first,
                implicit: false,
            } => {
                write!(
                    f,
                    "tag {tag} of case `{case}` is already used by case `{first}`"
                )
            }
            ErrorKind::DuplicateValue {
                case,
                value,
                first,
                implicit: true,
            } => {
                write!(
                    f,
                    "case `{case}` gets the implicit value {value}, already used by case `{first}`"
                )
            }
            ErrorKind::DuplicateValue {
                case,
                value,
                first,
                implicit: false,
            } => {
                write!(
                    f,
                    "value {value} of case `{case}` is already used by case `{first}`"
                )
            }
            ErrorKind::ReservedTag { case } => {
                write!(
                    f,
                    "case `{case}` uses tag 0, which is reserved for \"no value\""
                )
            }
            ErrorKind::TagOutOfRange {
                what,
                tag,
                width,
                max,
            } => {
                write!(f, "{what} {tag} does not fit in `{width}` (at most {max})")
            }
            ErrorKind::TooManyPages { name, pages, max } => {
                write!(
                    f,
                    "memory `{name}` has {pages} pages; a 32-bit memory has at most {max}"
                )
            }
            ErrorKind::ImplicitValueOverflow { case, width } => {
                write!(
                    f,
                    "the implicit value of `{case}` does not fit in `{width}`"
                )
            }
            ErrorKind::RecursiveInline { path } => {
                write!(
                    f,
                    "inline type `{}` contains itself",
                    path.first().map_or("", String::as_str)
                )?;
                if path.len() > 2 {
                    write!(f, " (through `{}`)", path.join("` -> `"))?;
                }
                Ok(())
            }
            ErrorKind::UnknownMemory(name) => {
                write!(f, "no memory `{name}` is declared in this interface")
            }
            ErrorKind::BadAttr { attr, reason } => write!(f, "`#{attr}` {reason}"),
            ErrorKind::ConflictingAttrs { first, second } => {
                write!(f, "`#{second}` conflicts with `#{first}`")
            }
            ErrorKind::BadDefault { reason } => write!(f, "invalid default: {reason}"),
            ErrorKind::NotAResource(name) => write!(f, "`{name}` is not a resource"),
            ErrorKind::NotAType { name, what } => {
                write!(f, "`{name}` is {what}, not a type")
            }
            ErrorKind::ZeroLengthArray => write!(f, "a fixed array needs at least one element"),
            ErrorKind::BadMapKey(found) => write!(
                f,
                "a map key is an integer, `bool`, `char` or a `#string`, not `{found}`"
            ),
            ErrorKind::EmptyItem { what, name } => write!(f, "{what} `{name}` has no cases"),
            ErrorKind::ZeroPages(name) => write!(f, "memory `{name}` has zero pages"),
            ErrorKind::DuplicatePackage => write!(f, "a file has at most one `package` header"),
            ErrorKind::PackageNotFirst => {
                write!(f, "the `package` header must come before every item")
            }
        }
    }
}
