//! What an interface of a lowered module *is*, for linking: its WIT identity
//! (package, interface name, version), read from the `karmem:idl` section.
//!
//! The descriptors (docs/ABI.md §5) name an interface by its KarmemIDL name
//! and the KarmemIDL package of the *module*: for a lowered component that
//! package is its world's (`root:component` for nearly every component), and
//! the IDL name is a short, possibly disambiguated one (`test`, `test_export`,
//! `b_x`). Neither identifies the WIT interface. What does is the origin line
//! `karmem-wit-import` writes as the first doc line of every interface it
//! maps (`/// wit: import test:resource-import-and-export/test`, owned by
//! `karmem_wit_import::convert::ORIGIN_DOC_PREFIX` and `origin_of`), and the package's
//! `/// wit: world <id>` line, which tells world-level functions (whose
//! interface carries the world's id) from interfaces. The runtime reads those
//! lines itself rather than depend on the WIT toolchain; a test checks the
//! prefix against the owner's.
//!
//! Owns: [`Identity`], reading it, and when an import's identity fits an
//! export's. Leaves choosing among fitting exporters to [`super::plan`].

use std::fmt;

use karmem_idl::ast::{Docs, Item};

use crate::handshake::ModuleAbi;

/// The doc-line prefix of an interface's WIT origin (`karmem_wit_import::convert::ORIGIN_DOC_PREFIX`).
pub(crate) const ORIGIN_DOC_PREFIX: &str = "wit: ";

/// What an imported or exported interface is, as far as linking can tell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    /// A WIT interface: `namespace:package/interface@version` (package,
    /// interface name and version), or the kebab name of an interface
    /// declared inline in a world (`import lists: interface { .. }`), which
    /// has no package. Matches the same text exactly.
    Wit(String),
    /// The world-level functions of a component (`import f: func()` /
    /// `export f: func()`). Worlds differ between components, so these are
    /// matched per function, by name.
    World,
    /// No WIT origin: a module written against KarmemIDL (or a plain module
    /// without the Karmem ABI). Its KarmemIDL package, with version (`None`
    /// without the ABI), and interface name.
    Idl {
        /// `ns:name@version` of the module's `karmem:idl` package.
        package: Option<String>,
        /// The KarmemIDL interface name.
        name: String,
    },
}

impl Identity {
    /// The identity of `module`'s interface named `name` (a KarmemIDL name,
    /// as in `karmem:<name>` imports and `<name>.<function>` exports).
    pub(crate) fn of(abi: Option<&ModuleAbi>, name: &str) -> Identity {
        let Some(abi) = abi else {
            return Identity::Idl {
                package: None,
                name: name.to_string(),
            };
        };
        let file = abi.schema.file();
        let world = file
            .package
            .as_ref()
            .and_then(|p| origin_line(&p.docs))
            .and_then(|line| line.strip_prefix("world "));
        let origin = match abi.schema.get(name) {
            Some(Item::Interface(def)) => origin_line(&def.docs).and_then(|line| {
                let (side, wit) = line.split_once(' ')?;
                matches!(side, "import" | "export").then_some(wit)
            }),
            _ => None,
        };
        match origin {
            Some(wit) if Some(wit) == world => Identity::World,
            Some(wit) => Identity::Wit(wit.to_string()),
            None => Identity::Idl {
                package: file.package.as_ref().map(|p| match &p.version {
                    Some(version) => format!("{}@{version}", p.name),
                    None => p.name.clone(),
                }),
                name: name.to_string(),
            },
        }
    }

    /// Whether an import of `self` can be served by an export of `export`
    /// without the host saying so. World-level functions are matched per
    /// function elsewhere; a WIT identity never fits a KarmemIDL-only one
    /// (there is nothing to compare: plug such pairs explicitly).
    pub fn fits(&self, export: &Identity) -> bool {
        match (self, export) {
            (Identity::Wit(a), Identity::Wit(b)) => a == b,
            (
                Identity::Idl {
                    package: a,
                    name: x,
                },
                Identity::Idl {
                    package: b,
                    name: y,
                },
            ) => x == y && (a.is_none() || b.is_none() || a == b),
            _ => false,
        }
    }

    /// Whether `written` (a command-line name) names this identity: the WIT
    /// text, or the KarmemIDL name of a module without WIT origins.
    pub(crate) fn is_named(&self, written: &str) -> bool {
        match self {
            Identity::Wit(wit) => wit == written,
            Identity::World => false,
            Identity::Idl { name, .. } => name == written,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Wit(wit) => write!(f, "{wit}"),
            Identity::World => write!(f, "world-level functions"),
            Identity::Idl {
                package: Some(package),
                name,
            } => write!(f, "{package} {name}"),
            Identity::Idl {
                package: None,
                name,
            } => write!(f, "{name}"),
        }
    }
}

fn origin_line(docs: &Docs) -> Option<&str> {
    docs.0.first()?.strip_prefix(ORIGIN_DOC_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_prefix_is_the_wit_importers() {
        assert_eq!(
            ORIGIN_DOC_PREFIX,
            karmem_wit_import::convert::ORIGIN_DOC_PREFIX
        );
    }

    #[test]
    fn identities_come_from_origin_lines() -> anyhow::Result<()> {
        let idl = "/// wit: world root:component/root\npackage root:component;\n\n\
                   /// wit: import a:b/x@1.0.0\ninterface x (dynamic, direct) {}\n\n\
                   /// wit: export root:component/root\ninterface root (dynamic, direct) {}\n\n\
                   interface plain (dynamic, direct) {}\n";
        let escaped = idl.replace('\n', "\\n");
        let bytes = wat::parse_str(format!(
            "(module (@custom \"{}\" \"0.1\") (@custom \"{}\" \"{escaped}\"))",
            karmem_contract::ABI_SECTION,
            karmem_contract::IDL_SECTION
        ))?;
        let abi = ModuleAbi::from_module_bytes(&bytes)?;
        assert_eq!(
            Identity::of(Some(&abi), "x"),
            Identity::Wit("a:b/x@1.0.0".into())
        );
        assert_eq!(Identity::of(Some(&abi), "root"), Identity::World);
        assert_eq!(
            Identity::of(Some(&abi), "plain"),
            Identity::Idl {
                package: Some("root:component".into()),
                name: "plain".into()
            }
        );
        assert!(!Identity::Wit("a:b/x@1.0.0".into()).fits(&Identity::Wit("a:b/x@2.0.0".into())));
        Ok(())
    }
}
