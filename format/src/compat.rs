//! Whether two versions of one interface function can call each other:
//! the rule a host applies in the ABI handshake (docs/ABI.md §5).
//!
//! Owns: the decision that the function type hash (FORMAT.md §11) is an
//! *identity* — equal hashes, same wire shape — and not the compatibility
//! rule. Argument and result structs are dynamic structs (FORMAT.md §10), so
//! a function that gained a parameter still exchanges readable messages with
//! its older peer although its hash changed. [`check_function`] decides with
//! the schemas of both sides: the two versions are compatible when
//! `karmem_idl::compat` finds one a safe evolution of the other, for the
//! function and every item its parameters and results reach.
//!
//! Does not own: the rules themselves (`karmem_idl::compat`, listed in
//! docs/IDL.md "Compatibility") or reading a guest's schema (the runtime reads
//! its `karmem:idl` section).

use std::fmt;
use std::string::String;
use std::vec::Vec;

use karmem_idl::Schema;
use karmem_idl::compat::{Change, compare_function};

/// Which side's version of a function is the newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newer {
    /// The two versions have the same signature and reach unchanged items.
    Neither,
    /// The host's schema is the newer one.
    Host,
    /// The guest's schema is the newer one.
    Guest,
}

/// Two versions of a function that can call each other.
#[derive(Debug, Clone, PartialEq)]
pub struct Compatible {
    pub newer: Newer,
    /// What changed from the older version to the newer one (all safe).
    pub changes: Vec<Change>,
}

/// Two versions of a function that cannot call each other.
#[derive(Debug, Clone, PartialEq)]
pub struct Incompatible {
    pub interface: String,
    pub function: String,
    /// The breaking changes from the host's version to the guest's.
    pub breaking: Vec<Change>,
}

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "function `{}.{}` is incompatible: neither version is a safe evolution of the other",
            self.interface, self.function
        )?;
        for change in &self.breaking {
            write!(f, "\n  breaking: {}: {}", change.path, change.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Incompatible {}

/// Whether the host's and the guest's versions of `interface.function` can
/// call each other, in either role: one must be a safe evolution of the other
/// (`karmem_idl::compat::compare_function` reports nothing breaking in one
/// direction). A function missing from either schema is incompatible.
pub fn check_function(
    host: &Schema,
    guest: &Schema,
    interface: &str,
    function: &str,
) -> Result<Compatible, Incompatible> {
    let forward = compare_function(host, guest, interface, function);
    let breaks = |changes: &[Change]| changes.iter().any(Change::is_breaking);
    if !breaks(&forward) {
        let newer = if forward.is_empty() { Newer::Neither } else { Newer::Guest };
        return Ok(Compatible { newer, changes: forward });
    }
    let backward = compare_function(guest, host, interface, function);
    if !breaks(&backward) {
        return Ok(Compatible { newer: Newer::Host, changes: backward });
    }
    Err(Incompatible {
        interface: interface.into(),
        function: function.into(),
        breaking: forward.into_iter().filter(Change::is_breaking).collect(),
    })
}
