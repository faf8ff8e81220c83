//! Which registered module serves which import of a module: the link plan.
//!
//! An import is served by the modules that export an interface of the same
//! [`Identity`] (WIT package, interface name and version; never the short
//! KarmemIDL name alone), other than the importer itself:
//!
//! - a **plug** the host made ([`super::Composition::plug`], CLI `--plug`)
//!   decides, whatever the names;
//! - else the exporter the host **chose** for the interface
//!   ([`super::Composition::choose`]), if it fits;
//! - **fanout** reaches every fitting exporter, in registration order;
//! - else exactly one must fit. Two fitting exporters are **ambiguous** and
//!   an error names them, with one exception that is not a guess: an
//!   exporter that also *imports* the interface is a **layer** over it (a
//!   wrapper, as in `runner -> intermediate -> leaf`). With exactly one
//!   layer among the modules that export the interface, importers outside
//!   serve from the layer, and the layer serves from the one remaining
//!   exporter. Linking a layer that nobody's import reached would leave it
//!   unused, which is never what a user who linked it meant. Two layers
//!   (whose order is unknown) are ambiguous. A module that could import
//!   from the importer (directly or through others, by the names and plugs
//!   alone) is no candidate for it: that link would be a cycle. So a module
//!   the layer itself imports from (a plug `layer:f=module:g`) is served
//!   from below the layer, as a composition tool would have wired it.
//!
//! World-level functions (`import f: func()`) have no interface identity:
//! each is served by the one module that exports a world-level function of
//! the same name (again: several are ambiguous, none leaves it unserved), or
//! by a plug, which may rename it (`toplevel-import` served by
//! `toplevel-export`: a composition tool wired them, nothing in the names
//! says so).
//!
//! Owns: the plan, as data ([`Link`]). Leaves instantiating and routing to
//! [`super::Composition`].

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use super::identity::Identity;
use super::{Entry, ModuleId, Registry};
use crate::link::Pattern;

/// One interface a module imports or exports.
#[derive(Debug, Clone)]
pub(super) struct Iface {
    /// KarmemIDL name (`karmem:<name>` imports, `<name>.<function>` exports).
    pub name: String,
    /// What it is.
    pub identity: Identity,
    /// Its message functions (KarmemIDL names), in module order.
    pub functions: Vec<String>,
}

/// A link's functions: the importer's name of each to the exporter's.
pub type FunctionMap = BTreeMap<String, String>;

/// An explicit link the host made: `importer`'s `import` (a function of it,
/// for world-level functions) is served by `exporter`'s `export`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plug {
    pub importer: ModuleId,
    pub import: String,
    pub import_function: Option<String>,
    pub exporter: ModuleId,
    pub export: String,
    pub export_function: Option<String>,
}

/// How one imported interface (or some of its functions) is served: the
/// plan of [`super::Composition::links`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The importer's interface.
    pub import: String,
    pub pattern: Pattern,
    /// `None`: every function, under its own name. `Some`: only these,
    /// importer's name to exporter's name (world-level functions, plugs).
    pub functions: Option<FunctionMap>,
    /// Serving modules and their exported interface: one, or every fitting
    /// one for fanout.
    pub exporters: Vec<(ModuleId, String)>,
}

/// The plan of `importer`'s imports; imports nothing serves are left out.
pub(super) fn plan(registry: &Registry, importer: ModuleId) -> Result<Vec<Link>> {
    let entry = entry(registry, importer)?;
    let mut links = Vec::new();
    for import in &entry.imports {
        let pattern = resolve_pattern(registry, entry, import);
        if import.identity == Identity::World {
            links.extend(world_links(registry, importer, import, pattern)?);
            continue;
        }
        if let Some(plug) = registry.plugs.iter().find(|p| {
            p.importer == importer && p.import == import.name && p.import_function.is_none()
        }) {
            links.push(Link {
                import: import.name.clone(),
                pattern,
                functions: None,
                exporters: vec![(plug.exporter, plug.export.clone())],
            });
            continue;
        }
        let candidates = fitting(registry, importer, &import.identity);
        if candidates.is_empty() {
            continue;
        }
        let exporters = match pattern {
            Pattern::Fanout => candidates,
            _ => vec![choose_one(registry, importer, import, candidates)?],
        };
        links.push(Link {
            import: import.name.clone(),
            pattern,
            functions: None,
            exporters,
        });
    }
    Ok(links)
}

/// `(module, exported interface)` of every module but `importer` exporting
/// an interface `identity` fits, in registration order.
fn fitting(
    registry: &Registry,
    importer: ModuleId,
    identity: &Identity,
) -> Vec<(ModuleId, String)> {
    registry
        .modules
        .iter()
        .enumerate()
        .filter(|(index, _)| *index != importer.0)
        .filter_map(|(index, entry)| {
            entry
                .exports
                .iter()
                .find(|export| identity.fits(&export.identity))
                .map(|export| (ModuleId(index), export.name.clone()))
        })
        .collect()
}

/// The one exporter of a direct, singleton or pool import (module docs).
fn choose_one(
    registry: &Registry,
    importer: ModuleId,
    import: &Iface,
    mut candidates: Vec<(ModuleId, String)>,
) -> Result<(ModuleId, String)> {
    // A candidate that could import from the importer (directly or through
    // others) cannot serve it: that link would be a cycle. Kept when
    // nothing else is left, for the cycle check to name.
    if candidates
        .iter()
        .any(|(c, _)| !reaches(registry, *c, importer))
    {
        candidates.retain(|(c, _)| !reaches(registry, *c, importer));
    }
    let chosen = registry
        .chosen
        .iter()
        .filter(|(name, _)| **name == import.name || import.identity.is_named(name))
        .find_map(|(_, id)| candidates.iter().find(|(c, _)| c == id));
    if let Some(chosen) = chosen {
        return Ok(chosen.clone());
    }
    if let [only] = candidates.as_slice() {
        return Ok(only.clone());
    }
    // Layers: modules that import and export the interface.
    let is_layer = |id: ModuleId| {
        registry.modules.get(id.0).is_some_and(|entry| {
            entry
                .imports
                .iter()
                .any(|i| import.identity.fits(&i.identity))
                && entry
                    .exports
                    .iter()
                    .any(|e| import.identity.fits(&e.identity))
        })
    };
    let layers: Vec<ModuleId> = (0..registry.modules.len())
        .map(ModuleId)
        .filter(|id| is_layer(*id))
        .collect();
    let pick: Vec<&(ModuleId, String)> = match layers.as_slice() {
        // The importer is the layer: it is served from below.
        [layer] if *layer == importer => candidates.iter().collect(),
        [layer] => candidates.iter().filter(|(c, _)| c == layer).collect(),
        _ => Vec::new(),
    };
    if let [only] = pick.as_slice() {
        return Ok((*only).clone());
    }
    let names = |ids: &[(ModuleId, String)]| {
        ids.iter()
            .map(|(id, export)| format!("`{}` (its `{export}`)", module_name(registry, *id)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let why = if layers.len() > 1 {
        let layers: Vec<String> = layers
            .iter()
            .map(|id| format!("`{}`", module_name(registry, *id)))
            .collect();
        format!(
            "; {} import it too, so which wraps which is unknown",
            layers.join(" and ")
        )
    } else {
        String::new()
    };
    bail!(
        "`{}`'s import `{}` (`{}`) is ambiguous: it fits {}{why}; plug one explicitly \
         (`karmem-bridge run --plug`, `Composition::plug`)",
        module_name(registry, importer),
        import.identity,
        import.name,
        names(&candidates)
    )
}

/// Whether `from` could import from `to`, directly or through others: an
/// over-approximation of the plan's edges that needs no choice (every
/// fitting exporter of an import, or its plug).
fn reaches(registry: &Registry, from: ModuleId, to: ModuleId) -> bool {
    let mut seen = vec![from];
    let mut stack = vec![from];
    while let Some(current) = stack.pop() {
        for next in possible_exporters(registry, current) {
            if next == to {
                return true;
            }
            if !seen.contains(&next) {
                seen.push(next);
                stack.push(next);
            }
        }
    }
    false
}

/// Every module that could serve one of `importer`'s imports.
fn possible_exporters(registry: &Registry, importer: ModuleId) -> Vec<ModuleId> {
    let Some(entry) = registry.modules.get(importer.0) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for import in &entry.imports {
        let plugged: Vec<ModuleId> = registry
            .plugs
            .iter()
            .filter(|p| p.importer == importer && p.import == import.name)
            .map(|p| p.exporter)
            .collect();
        found.extend(plugged.iter().copied());
        if import.identity == Identity::World {
            for (index, other) in registry.modules.iter().enumerate() {
                let serves = other.exports.iter().any(|e| {
                    e.identity == Identity::World
                        && import.functions.iter().any(|f| e.functions.contains(f))
                });
                if index != importer.0 && serves {
                    found.push(ModuleId(index));
                }
            }
        } else if plugged.is_empty() {
            found.extend(
                fitting(registry, importer, &import.identity)
                    .into_iter()
                    .map(|(m, _)| m),
            );
        }
    }
    found
}

/// World-level imports: per function, by name or plug; one link per
/// serving module.
fn world_links(
    registry: &Registry,
    importer: ModuleId,
    import: &Iface,
    pattern: Pattern,
) -> Result<Vec<Link>> {
    let mut by_exporters: BTreeMap<Vec<(ModuleId, String)>, FunctionMap> = BTreeMap::new();
    for function in &import.functions {
        let plugged = registry.plugs.iter().find(|p| {
            p.importer == importer
                && p.import == import.name
                && p.import_function.as_deref() == Some(function.as_str())
        });
        let (exporters, theirs) = match plugged {
            Some(plug) => (
                vec![(plug.exporter, plug.export.clone())],
                plug.export_function
                    .clone()
                    .unwrap_or_else(|| function.clone()),
            ),
            None => {
                let candidates: Vec<(ModuleId, String)> = registry
                    .modules
                    .iter()
                    .enumerate()
                    .filter(|(index, _)| *index != importer.0)
                    .filter_map(|(index, entry)| {
                        entry
                            .exports
                            .iter()
                            .find(|e| {
                                e.identity == Identity::World && e.functions.contains(function)
                            })
                            .map(|e| (ModuleId(index), e.name.clone()))
                    })
                    .collect();
                match (candidates.len(), pattern) {
                    (0, _) => continue,
                    (1, _) | (_, Pattern::Fanout) => (candidates, function.clone()),
                    _ => {
                        let names: Vec<String> = candidates
                            .iter()
                            .map(|(id, _)| format!("`{}`", module_name(registry, *id)))
                            .collect();
                        bail!(
                            "`{}`'s world-level import `{}` is ambiguous: {} export a function of that name; \
                             plug one explicitly (`karmem-bridge run --plug`, `Composition::plug`)",
                            module_name(registry, importer),
                            karmem_format::wave::kebab(function),
                            names.join(" and ")
                        )
                    }
                }
            }
        };
        by_exporters
            .entry(exporters)
            .or_default()
            .insert(function.clone(), theirs);
    }
    Ok(by_exporters
        .into_iter()
        .map(|(exporters, functions)| Link {
            import: import.name.clone(),
            pattern,
            functions: Some(functions),
            exporters,
        })
        .collect())
}

/// The pattern of `import`: the host's (by KarmemIDL name or WIT identity),
/// else what the importer declares, else direct.
pub(super) fn resolve_pattern(registry: &Registry, importer: &Entry, import: &Iface) -> Pattern {
    registry
        .patterns
        .get(&import.name)
        .or_else(|| {
            registry
                .patterns
                .iter()
                .find(|(name, _)| import.identity.is_named(name))
                .map(|(_, pattern)| pattern)
        })
        .copied()
        .or_else(|| {
            importer
                .module
                .declared_pattern(&import.name, registry.pool_size)
        })
        .unwrap_or(Pattern::Direct)
}

fn entry(registry: &Registry, id: ModuleId) -> Result<&Entry> {
    match registry.modules.get(id.0) {
        Some(entry) => Ok(entry),
        None => bail!("unknown module id"),
    }
}

pub(super) fn module_name(registry: &Registry, id: ModuleId) -> String {
    registry
        .modules
        .get(id.0)
        .map(|m| m.name.clone())
        .unwrap_or_default()
}
