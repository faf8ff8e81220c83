//! The WIT view of a component whose root exports things a WIT world cannot
//! hold.
//!
//! Owns: rewriting the root of a component binary so that `wit_component`'s
//! decoder accepts it, keeping every function the component exports. A WIT
//! world exports only functions and interfaces, while a component may also
//! export, at its root:
//! - a value type (`(export "t" (type $t))`): in the view it becomes the
//!   import `(import "t" (type (eq $t)))`, which takes the same place in the
//!   type index space, so every later item (and every function type naming
//!   `t`) stays valid; the world then lists `t` as a world-level type, the
//!   form WIT has for types declared at the root;
//! - a resource: the import `(import "r" (type (sub resource)))` (a component
//!   cannot import its own resource type); exported functions name the
//!   exported resource, so they name the imported one in the view, and the
//!   world lists `r` as a world-level resource;
//! - anything else with no function in it (a core module, a component, a
//!   component, instance or function type, an instance holding only such
//!   things): left out of the view. Leaving an export out removes an index of
//!   its sort, so this is done only for exports that no later section can
//!   refer to (every section after them is an export or custom section); later
//!   exports of the same sort are renumbered.
//!
//! The view is used only to read the world; the component itself is lowered as
//! it is. Type exports carry no code, so the Karmem edge loses nothing.
//!
//! Does not own: the decoding (`wit_component::decode`, called by `load`), or
//! components whose functions sit where WIT cannot reach them (an instance
//! nested in an exported instance): those keep the decoder's error.

use anyhow::{Context as _, Result, bail};
use wasmparser::component_types::{ComponentAnyTypeId, ComponentEntityType};
use wasmparser::types::TypesRef;
use wasmparser::{ComponentExternalKind, Parser, Payload, Validator, WasmFeatures};

/// The section id of a component's export section.
const EXPORT_SECTION: u8 = 11;
/// The section id of a component's import section.
const IMPORT_SECTION: u8 = 10;
/// The section id of custom sections.
const CUSTOM_SECTION: u8 = 0;

/// What the view does with one root export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Treatment {
    Keep,
    /// A value type: imported with an `eq` bound instead.
    AsTypeImport,
    /// A resource: imported as a resource (a component cannot import its own
    /// resource type); functions naming the export then name the import.
    AsResourceImport,
    /// Nothing WIT can hold and no function: left out.
    Drop,
}

/// One root export, raw.
struct RootExport<'a> {
    /// The encoded extern name, as it is (imports encode names the same way).
    name_bytes: &'a [u8],
    name: &'a str,
    kind: ComponentExternalKind,
    index: u32,
    has_ascription: bool,
    /// The whole encoded item.
    raw: &'a [u8],
}

enum Section<'a> {
    Raw(u8, &'a [u8]),
    Exports(Vec<RootExport<'a>>),
}

/// The view of `component`, or `None` when it exports nothing a world
/// cannot hold (the decoder's error then stands as it is).
pub fn wit_view(component: &[u8]) -> Result<Option<Vec<u8>>> {
    let types = Validator::new_with_features(WasmFeatures::all())
        .validate_all(component)
        .context("the component does not validate")?;
    let types = types.as_ref();
    let (header, sections) = root_sections(component)?;

    let last_other = sections
        .iter()
        .rposition(|s| !matches!(s, Section::Exports(_) | Section::Raw(CUSTOM_SECTION, _)));
    let any_ascription = sections
        .iter()
        .any(|s| matches!(s, Section::Exports(exports) if exports.iter().any(|e| e.has_ascription)));
    let mut changed = false;
    // Indices left out so far, per sort, for renumbering later exports.
    let mut dropped: Vec<(SortKey, u32)> = Vec::new();
    let mut next_index = SortCounters::default();
    let mut out = header.to_vec();
    for (position, section) in sections.iter().enumerate() {
        let exports = match section {
            Section::Raw(id, data) => {
                next_index.count_raw(*id, data)?;
                push_section(&mut out, *id, &[data]);
                continue;
            }
            Section::Exports(exports) => exports,
        };
        let trailing = last_other.is_none_or(|last| position > last);
        // Runs of kept exports and converted imports, in order.
        let mut run: Vec<Vec<u8>> = Vec::new();
        let mut run_is_import = false;
        let mut run_count = 0u32;
        let flush = |out: &mut Vec<u8>, run: &mut Vec<Vec<u8>>, is_import: bool, count: &mut u32| {
            if run.is_empty() {
                return;
            }
            let mut body = Vec::new();
            leb(&mut body, *count);
            let parts: Vec<&[u8]> = std::iter::once(body.as_slice()).chain(run.iter().map(Vec::as_slice)).collect();
            push_section(out, if is_import { IMPORT_SECTION } else { EXPORT_SECTION }, &parts);
            run.clear();
            *count = 0;
        };
        for export in exports {
            let sort = SortKey::of(export.kind);
            let item = types
                .component_item_for_export(export.name)
                .with_context(|| format!("the validator has no type for the export `{}`", export.name))?;
            let mut treatment = treatment_of(types, &item.ty);
            let renumbered = renumber(export.index, sort, &dropped);
            if renumbered.is_none() {
                // A re-export of something left out.
                treatment = Treatment::Drop;
            }
            if treatment == Treatment::Drop && !trailing {
                return Ok(None);
            }
            match treatment {
                Treatment::Keep => {
                    if run_is_import {
                        flush(&mut out, &mut run, true, &mut run_count);
                    }
                    run_is_import = false;
                    let index = renumbered.unwrap_or(export.index);
                    if index == export.index {
                        run.push(export.raw.to_vec());
                    } else {
                        if export.has_ascription {
                            return Ok(None);
                        }
                        run.push(encode_export(export, index));
                    }
                    run_count += 1;
                    next_index.bump(sort);
                }
                Treatment::AsTypeImport | Treatment::AsResourceImport => {
                    if !run_is_import {
                        flush(&mut out, &mut run, false, &mut run_count);
                    }
                    run_is_import = true;
                    let index = renumbered.unwrap_or(export.index);
                    let mut import = export.name_bytes.to_vec();
                    if treatment == Treatment::AsTypeImport {
                        // externdesc `type`, bound `eq`
                        import.extend_from_slice(&[0x03, 0x00]);
                        leb(&mut import, index);
                    } else {
                        // externdesc `type`, bound `sub resource`
                        import.extend_from_slice(&[0x03, 0x01]);
                    }
                    run.push(import);
                    run_count += 1;
                    next_index.bump(sort);
                    changed = true;
                }
                Treatment::Drop => {
                    // Ascribed types would need renumbering too.
                    if sort == SortKey::Type && any_ascription {
                        return Ok(None);
                    }
                    dropped.push((sort, next_index.get(sort)));
                    changed = true;
                }
            }
        }
        flush(&mut out, &mut run, run_is_import, &mut run_count);
    }
    Ok(changed.then_some(out))
}

/// What a root export becomes in the view.
fn treatment_of(types: TypesRef<'_>, ty: &ComponentEntityType) -> Treatment {
    match ty {
        ComponentEntityType::Func(_) => Treatment::Keep,
        ComponentEntityType::Type { referenced: ComponentAnyTypeId::Defined(_), .. } => Treatment::AsTypeImport,
        ComponentEntityType::Type { referenced: ComponentAnyTypeId::Resource(_), .. } => Treatment::AsResourceImport,
        ComponentEntityType::Type { .. } | ComponentEntityType::Module(_) | ComponentEntityType::Value(_) => {
            Treatment::Drop
        }
        ComponentEntityType::Component(_) => Treatment::Drop,
        ComponentEntityType::Instance(id) => {
            let Some(instance) = types.get(*id) else { return Treatment::Keep };
            let representable = instance.exports.values().all(|item| match item.ty {
                ComponentEntityType::Func(_) => true,
                ComponentEntityType::Type { referenced, .. } => {
                    matches!(referenced, ComponentAnyTypeId::Defined(_) | ComponentAnyTypeId::Resource(_))
                }
                _ => false,
            });
            if representable || has_function(types, ty) { Treatment::Keep } else { Treatment::Drop }
        }
    }
}

/// Whether `ty` holds a function, at any depth of instances.
fn has_function(types: TypesRef<'_>, ty: &ComponentEntityType) -> bool {
    match ty {
        ComponentEntityType::Func(_) => true,
        ComponentEntityType::Instance(id) => {
            types.get(*id).is_none_or(|instance| instance.exports.values().any(|item| has_function(types, &item.ty)))
        }
        _ => false,
    }
}

/// `index` of `sort` once the earlier `dropped` exports are gone; `None` when
/// it is one of them.
fn renumber(index: u32, sort: SortKey, dropped: &[(SortKey, u32)]) -> Option<u32> {
    let mut below = 0u32;
    for &(s, d) in dropped {
        if s != sort {
            continue;
        }
        if d == index {
            return None;
        }
        if d < index {
            below += 1;
        }
    }
    Some(index - below)
}

fn encode_export(export: &RootExport<'_>, index: u32) -> Vec<u8> {
    let mut item = export.name_bytes.to_vec();
    match export.kind {
        ComponentExternalKind::Module => item.extend_from_slice(&[0x00, 0x11]),
        ComponentExternalKind::Func => item.push(0x01),
        ComponentExternalKind::Value => item.push(0x02),
        ComponentExternalKind::Type => item.push(0x03),
        ComponentExternalKind::Component => item.push(0x04),
        ComponentExternalKind::Instance => item.push(0x05),
    }
    leb(&mut item, index);
    item.push(0x00);
    item
}

/// The sorts an export can add an index to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortKey {
    Module,
    Func,
    Value,
    Type,
    Component,
    Instance,
}

impl SortKey {
    fn of(kind: ComponentExternalKind) -> SortKey {
        match kind {
            ComponentExternalKind::Module => SortKey::Module,
            ComponentExternalKind::Func => SortKey::Func,
            ComponentExternalKind::Value => SortKey::Value,
            ComponentExternalKind::Type => SortKey::Type,
            ComponentExternalKind::Component => SortKey::Component,
            ComponentExternalKind::Instance => SortKey::Instance,
        }
    }
}

/// The next index of each sort at the root, as far as the view has come.
/// Only exports are left out, and only after every other section, so the
/// counts matter only for the sorts exports add to; they are taken from the
/// validator-independent section contents.
#[derive(Debug, Default)]
struct SortCounters {
    counts: [u32; 6],
}

impl SortCounters {
    fn slot(sort: SortKey) -> usize {
        match sort {
            SortKey::Module => 0,
            SortKey::Func => 1,
            SortKey::Value => 2,
            SortKey::Type => 3,
            SortKey::Component => 4,
            SortKey::Instance => 5,
        }
    }
    fn get(&self, sort: SortKey) -> u32 {
        self.counts.get(Self::slot(sort)).copied().unwrap_or(0)
    }
    fn bump(&mut self, sort: SortKey) {
        if let Some(count) = self.counts.get_mut(Self::slot(sort)) {
            *count += 1;
        }
    }
    /// Counts what a raw root section adds to the sorts exports add to.
    fn count_raw(&mut self, id: u8, data: &[u8]) -> Result<()> {
        use wasmparser::{
            ComponentAliasSectionReader, ComponentCanonicalSectionReader, ComponentImportSectionReader,
            ComponentInstanceSectionReader, ComponentTypeSectionReader,
        };
        let reader = wasmparser::BinaryReader::new(data, 0);
        match id {
            // core module
            1 => self.bump(SortKey::Module),
            // component
            4 => self.bump(SortKey::Component),
            // component instances
            5 => {
                for _ in ComponentInstanceSectionReader::new(reader)? {
                    self.bump(SortKey::Instance);
                }
            }
            6 => {
                for alias in ComponentAliasSectionReader::new(reader)? {
                    let sort = match alias? {
                        wasmparser::ComponentAlias::InstanceExport { kind, .. } => Some(SortKey::of(kind)),
                        wasmparser::ComponentAlias::Outer { kind, .. } => match kind {
                            wasmparser::ComponentOuterAliasKind::CoreModule => Some(SortKey::Module),
                            wasmparser::ComponentOuterAliasKind::Type => Some(SortKey::Type),
                            wasmparser::ComponentOuterAliasKind::Component => Some(SortKey::Component),
                            wasmparser::ComponentOuterAliasKind::CoreType => None,
                        },
                        wasmparser::ComponentAlias::CoreInstanceExport { .. } => None,
                    };
                    if let Some(sort) = sort {
                        self.bump(sort);
                    }
                }
            }
            7 => {
                for _ in ComponentTypeSectionReader::new(reader)? {
                    self.bump(SortKey::Type);
                }
            }
            8 => {
                for canon in ComponentCanonicalSectionReader::new(reader)? {
                    if matches!(canon?, wasmparser::CanonicalFunction::Lift { .. }) {
                        self.bump(SortKey::Func);
                    }
                }
            }
            IMPORT_SECTION => {
                for import in ComponentImportSectionReader::new(reader)? {
                    let sort = match import?.ty {
                        wasmparser::ComponentTypeRef::Module(_) => SortKey::Module,
                        wasmparser::ComponentTypeRef::Func(_) => SortKey::Func,
                        wasmparser::ComponentTypeRef::Value(_) => SortKey::Value,
                        wasmparser::ComponentTypeRef::Type(_) => SortKey::Type,
                        wasmparser::ComponentTypeRef::Instance(_) => SortKey::Instance,
                        wasmparser::ComponentTypeRef::Component(_) => SortKey::Component,
                    };
                    self.bump(sort);
                }
            }
            // component start: one value per result, values are refused by the
            // decoder anyway
            _ => {}
        }
        Ok(())
    }
}

/// The 8-byte header and the root's sections.
fn root_sections(component: &[u8]) -> Result<(&[u8], Vec<Section<'_>>)> {
    let header = component.get(..8).context("the component is shorter than its header")?;
    let mut sections = Vec::new();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(component) {
        let payload = payload?;
        let at_root = depth == 1;
        match &payload {
            Payload::Version { .. } => {
                depth += 1;
                continue;
            }
            Payload::End(_) => {
                depth = depth.saturating_sub(1);
                continue;
            }
            _ => {}
        }
        if !at_root {
            continue;
        }
        if let Payload::ComponentExportSection(reader) = &payload {
            let end = reader.range().end;
            let mut items = Vec::new();
            let mut iter = reader.clone().into_iter_with_offsets().peekable();
            while let Some(item) = iter.next() {
                let (start, export) = item?;
                let item_end = match iter.peek() {
                    Some(Ok((next, _))) => *next,
                    _ => end,
                };
                let raw = component.get(start..item_end).context("an export runs past the section")?;
                let mut names = wasmparser::BinaryReader::new(raw, 0);
                let _: wasmparser::ComponentExternName<'_> = names.read()?;
                let name_bytes = raw.get(..names.original_position()).context("an export name runs past its item")?;
                items.push(RootExport {
                    name_bytes,
                    name: export.name.name,
                    kind: export.kind,
                    index: export.index,
                    has_ascription: export.ty.is_some(),
                    raw,
                });
            }
            sections.push(Section::Exports(items));
            continue;
        }
        let Some((id, range)) = payload.as_section() else { continue };
        let data = component.get(range).context("a section runs past the component")?;
        sections.push(Section::Raw(id, data));
    }
    if depth != 0 {
        bail!("the component ends inside a nested module or component");
    }
    Ok((header, sections))
}

fn push_section(out: &mut Vec<u8>, id: u8, parts: &[&[u8]]) {
    out.push(id);
    let len: usize = parts.iter().map(|p| p.len()).sum();
    leb(out, u32::try_from(len).unwrap_or(u32::MAX));
    for part in parts {
        out.extend_from_slice(part);
    }
}

fn leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use crate::load::load_wasm;

    fn world_items(wat: &str) -> (Vec<String>, Vec<String>) {
        let bytes = wat::parse_str(wat).unwrap();
        let loaded = load_wasm(&bytes, None).unwrap();
        let world = &loaded.resolve.worlds[loaded.world];
        let names = |items: &wit_parser::IndexMap<wit_parser::WorldKey, wit_parser::WorldItem>| {
            items.keys().map(|k| loaded.resolve.name_world_key(k)).collect::<Vec<_>>()
        };
        (names(&world.imports), names(&world.exports))
    }

    #[test]
    fn root_type_exports_become_world_types_and_functions_stay() {
        let (imports, exports) = world_items(
            r#"(component
                (core module $m (func (export "f") (param i32) (result i32) local.get 0))
                (core instance $i (instantiate $m))
                (type $e' (enum "a" "b"))
                (export $e "e" (type $e'))
                (type $r' (resource (rep i32)))
                (export $r "r" (type $r'))
                (func (export "f") (param "x" u32) (result $e) (canon lift (core func $i "f")))
                (type (export "ct") (component))
            )"#,
        );
        assert_eq!(imports, ["e", "r"]);
        assert_eq!(exports, ["f"]);
    }

    #[test]
    fn an_exported_instance_holding_a_module_is_left_out() {
        let (imports, exports) = world_items(
            r#"(component
                (core module $m)
                (instance $i (export "m" (core module $m)))
                (export "i" (instance $i))
            )"#,
        );
        assert!(imports.is_empty() && exports.is_empty(), "{imports:?} {exports:?}");
    }

    #[test]
    fn a_component_the_decoder_reads_has_no_view() {
        let bytes = wat::parse_str(
            r#"(component
                (core module $m (func (export "f")))
                (core instance $i (instantiate $m))
                (func (export "f") (canon lift (core func $i "f")))
            )"#,
        )
        .unwrap();
        assert!(super::wit_view(&bytes).unwrap().is_none());
    }
}
