//! Structured errors of the format: what went wrong and at which byte offset.
//!
//! Owns: [`Error`] and [`ErrorKind`], shared by views, the validator and the
//! decoder. Schema problems (a type the layout engine refuses) and value/type
//! mismatches while encoding have their own errors in `layout` and `value`.

use core::fmt;

/// A problem in a message, at byte `offset` of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// Byte offset in the message where the problem was found.
    pub offset: u32,
}

impl Error {
    pub const fn new(kind: ErrorKind, offset: u32) -> Error {
        Error { kind, offset }
    }
}

/// What is wrong. Every variant is a rule of `docs/FORMAT.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A read of `size` bytes at the offset runs past the message end `len`.
    OutOfBounds { size: u64, len: u32 },
    /// The message is longer than 4 GiB − 1 bytes.
    MessageTooLarge,
    /// The message does not start with the empty-struct word `0x0000000C` (§2).
    BadMessageHeader { found: u32 },
    /// An object's offset is not a multiple of its alignment (§3).
    Misaligned { align: u32 },
    /// An object overlaps another object (or the message header) starting at `other` (§3).
    Overlap { other: u32 },
    /// An object that needs storage has offset 0, or one without storage has a nonzero offset (§3).
    BadOffset { expected_zero: bool },
    /// A dynamic struct header with `size_units == 0` or `used < 4` (§5.2).
    BadStructHeader { header: u32 },
    /// An array slot whose length exceeds its capacity (§6.2).
    LengthExceedsCapacity { length: u32, capacity: u32 },
    /// A `bool` byte other than 0 or 1.
    InvalidBool { value: u8 },
    /// A `char` that is not a Unicode scalar value.
    InvalidChar { value: u32 },
    /// An enum value that is not declared.
    InvalidEnum { value: u64 },
    /// Flag bits set beyond the declared flags.
    InvalidFlags,
    /// An option or result discriminant other than 0 or 1.
    InvalidDiscriminant { value: u8 },
    /// A union tag that is not declared.
    UnknownTag { tag: u32 },
    /// A `[]u8 #string` that is not UTF-8.
    InvalidUtf8,
    /// A `[]u16 #string` that is not well-formed UTF-16.
    InvalidUtf16,
    /// A column directory or bunch table with more entries than `Limits::max_columns`.
    TooManyColumns { count: u32 },
    /// A column directory listing the same hash twice.
    DuplicateColumn { hash: u32 },
    /// A bunch table whose tags are not strictly increasing.
    BunchOrder { tag: u32 },
    /// A bunch table whose entry lengths do not sum to the slot's length,
    /// or whose slot capacity differs from its length.
    BunchLength { expected: u64, found: u64 },
    /// Nesting deeper than `Limits::max_depth`.
    DepthLimit { depth: u32 },
    /// More than `Limits::max_visit` bytes and elements visited.
    VisitLimit { visited: u64 },
    /// An absent field (older writer) whose type has no zero value and no default (§7).
    NoDefault,
    /// A column view asked for a type whose size differs from the column's element size.
    WrongElementSize { expected: u32, found: u32 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte {:#x}: {}", self.offset, self.kind)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ErrorKind::OutOfBounds { size, len } => {
                write!(f, "reading {size} bytes runs past the message end ({len} bytes)")
            }
            ErrorKind::MessageTooLarge => f.write_str("message larger than 4 GiB - 1 bytes"),
            ErrorKind::BadMessageHeader { found } => {
                write!(f, "message header word is {found:#010x}, expected 0x0000000c")
            }
            ErrorKind::Misaligned { align } => write!(f, "offset is not {align}-byte aligned"),
            ErrorKind::Overlap { other } => {
                write!(f, "object overlaps the object at byte {other:#x}")
            }
            ErrorKind::BadOffset { expected_zero: true } => {
                f.write_str("offset of an object without storage must be 0")
            }
            ErrorKind::BadOffset { expected_zero: false } => {
                f.write_str("offset 0 for an object that needs storage")
            }
            ErrorKind::BadStructHeader { header } => {
                write!(f, "invalid dynamic struct header {header:#010x}")
            }
            ErrorKind::LengthExceedsCapacity { length, capacity } => {
                write!(f, "array length {length} exceeds its capacity {capacity}")
            }
            ErrorKind::InvalidBool { value } => write!(f, "invalid bool {value}"),
            ErrorKind::InvalidChar { value } => write!(f, "invalid char {value:#x}"),
            ErrorKind::InvalidEnum { value } => write!(f, "undeclared enum value {value}"),
            ErrorKind::InvalidFlags => f.write_str("undeclared flag bits set"),
            ErrorKind::InvalidDiscriminant { value } => {
                write!(f, "invalid option/result discriminant {value}")
            }
            ErrorKind::UnknownTag { tag } => write!(f, "undeclared union tag {tag}"),
            ErrorKind::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            ErrorKind::InvalidUtf16 => f.write_str("string is not valid UTF-16"),
            ErrorKind::TooManyColumns { count } => {
                write!(f, "{count} directory entries exceed the limit")
            }
            ErrorKind::DuplicateColumn { hash } => {
                write!(f, "column hash {hash:#010x} listed twice")
            }
            ErrorKind::BunchOrder { tag } => {
                write!(f, "bunch entry tag {tag} is not greater than the previous one")
            }
            ErrorKind::BunchLength { expected, found } => {
                write!(f, "bunch holds {found} values, the slot says {expected}")
            }
            ErrorKind::DepthLimit { depth } => write!(f, "nesting depth {depth} exceeds the limit"),
            ErrorKind::VisitLimit { visited } => {
                write!(f, "visiting {visited} bytes and elements exceeds the limit")
            }
            ErrorKind::NoDefault => {
                f.write_str("absent field has no default and its type has no zero value")
            }
            ErrorKind::WrongElementSize { expected, found } => {
                write!(f, "column elements are {found} bytes, the view type has {expected}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for Error {}

pub type Result<T, E = Error> = core::result::Result<T, E>;
