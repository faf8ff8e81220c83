//! The Karmem boundary of every fixture's builds (docs/ABI.md §2, §4, §5).
//!
//! Each `fixtures/components/<guest>.<variant>.wasm` (p2, core, p1-reactor,
//! p1-command) is lowered as `karmem-bridge lower` does by default, and its
//! boundary is read back: the `<interface>.<function>` and resource-drop
//! exports, the `karmem:*` imports, and the descriptors the handshake
//! decodes. Within one module they must agree with each other (every
//! exported function described, ids consecutive, no empty or WASI
//! descriptor); across the variants of one guest they must be equal, since
//! WASI never crosses the boundary and must not shape its names.

use std::collections::BTreeMap;

use anyhow::{Context, Result, ensure};
use karmem_runtime::Runtime;
use karmem_runtime::invoke::{Session, SessionOptions};
use karmem_runtime::link::InterfaceInfo;
use karmem_tests::fixtures::component_fixtures;

/// What a host sees of a lowered module's boundary.
#[derive(Debug, PartialEq, Eq)]
struct Boundary {
    /// Function exports other than the ABI's entry points and WASI's.
    exports: Vec<String>,
    /// `karmem:<interface>` imports as `module/field`.
    imports: Vec<String>,
    /// Descriptors, imports then exports, with everything but memory offsets.
    descriptors: Vec<String>,
}

const ENTRY_POINTS: &[&str] = &[
    "KarmemInit",
    "KarmemImport",
    "KarmemExport",
    "KarmemCall",
    "KarmemAlloc",
    "KarmemFree",
    "_start",
    "_initialize",
];

fn describe(side: &str, info: &InterfaceInfo) -> String {
    let functions: Vec<String> =
        info.functions.iter().map(|f| format!("{}#{}:{:016x}", f.name, f.id, f.type_hash)).collect();
    format!(
        "{side} {} package={} wit={}/{}@{} [{}] memories={}",
        info.name,
        info.package,
        info.wit_package,
        info.wit_interface,
        info.wit_version,
        functions.join(", "),
        info.memories.len()
    )
}

fn boundary_of(runtime: &Runtime, lowered: &[u8], what: &str) -> Result<Boundary> {
    let module = wasmparser::Parser::new(0).parse_all(lowered);
    let (mut exports, mut imports) = (Vec::new(), Vec::new());
    for payload in module {
        match payload? {
            wasmparser::Payload::ExportSection(section) => {
                for export in section {
                    let export = export?;
                    if export.kind == wasmparser::ExternalKind::Func && !ENTRY_POINTS.contains(&export.name) {
                        exports.push(export.name.to_string());
                    }
                }
            }
            wasmparser::Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import?;
                    if import.module.starts_with("karmem:") {
                        imports.push(format!("{}/{}", import.module, import.name));
                    }
                }
            }
            _ => {}
        }
    }
    let session = Session::new(runtime, lowered, &SessionOptions::default())
        .with_context(|| format!("{what}: the handshake failed"))?;
    let found = session.interfaces();
    let mut next_id = 0;
    for info in &found.exports {
        for function in &info.functions {
            ensure!(function.id == next_id, "{what}: `{}.{}` has id {}, not {next_id}", info.name, function.name, function.id);
            next_id += 1;
            let export = format!("{}.{}", info.name, function.name);
            ensure!(exports.contains(&export), "{what}: `{export}` is described but not exported");
        }
    }
    for (side, infos) in [("import", &found.imports), ("export", &found.exports)] {
        for info in infos.iter() {
            ensure!(
                !info.functions.is_empty() || !info.memories.is_empty(),
                "{what}: {side} `{}` has a descriptor with nothing in it",
                info.name
            );
            ensure!(
                !info.wit_package.starts_with("wasi:") && !info.package.starts_with("wasi:"),
                "{what}: WASI has a descriptor: {}",
                describe(side, info)
            );
            ensure!(
                info.package != "root:component",
                "{what}: `{}`'s package is the made-up `root:component`",
                info.name
            );
        }
    }
    for export in &exports {
        let (interface, function) =
            export.split_once('.').with_context(|| format!("{what}: the export `{export}` is not `<interface>.<function>`"))?;
        ensure!(!function.contains('.'), "{what}: the export `{export}` has two dots");
        let info = found
            .exports
            .iter()
            .find(|i| i.name == interface)
            .with_context(|| format!("{what}: the export `{export}` belongs to no described interface"))?;
        if let Some(resource) = function.strip_prefix("[resource-drop]") {
            // the resource's WIT name, which `karmem:idl` records on its item
            let idl = &session.abi().context("no karmem:idl")?.idl;
            ensure!(
                idl.contains(&format!("/// wit: resource {resource}\n")),
                "{what}: `{export}` drops `{resource}`, which no KarmemIDL resource comes from"
            );
        } else {
            ensure!(
                info.functions.iter().any(|f| f.name == function),
                "{what}: the export `{export}` is not described"
            );
        }
    }
    for import in &imports {
        let (module, field) = import.split_once('/').context("an import")?;
        let interface = module.trim_start_matches("karmem:");
        let info = found
            .imports
            .iter()
            .find(|i| i.name == interface)
            .with_context(|| format!("{what}: the import `{import}` belongs to no described interface"))?;
        ensure!(
            field.starts_with("[resource-drop]") || info.functions.iter().any(|f| f.name == field),
            "{what}: the import `{import}` is not described"
        );
    }
    let mut descriptors: Vec<String> = found.imports.iter().map(|i| describe("import", i)).collect();
    descriptors.extend(found.exports.iter().map(|i| describe("export", i)));
    exports.sort();
    imports.sort();
    Ok(Boundary { exports, imports, descriptors })
}

#[test]
fn every_build_of_a_guest_has_the_same_boundary() -> Result<()> {
    let runtime = Runtime::new(karmem_runtime::RuntimeConfig::default()).context("a runtime")?;
    let mut by_guest: BTreeMap<String, Vec<(String, Boundary)>> = BTreeMap::new();
    for fixture in component_fixtures()? {
        let what = format!("{}.{}", fixture.guest, fixture.variant);
        let component = std::fs::read(&fixture.path)?;
        let lowered = karmem_bridge::lower(&component, &karmem_bridge::LowerOptions::default())
            .with_context(|| format!("lowering `{what}`"))?;
        let boundary = boundary_of(&runtime, &lowered.module, &what)?;
        by_guest.entry(fixture.guest.clone()).or_default().push((fixture.variant.clone(), boundary));
    }
    ensure!(by_guest.len() >= 6, "too few fixtures: {:?}", by_guest.keys().collect::<Vec<_>>());
    for (guest, builds) in &by_guest {
        let Some(((first, expected), rest)) = builds.split_first() else { continue };
        ensure!(!rest.is_empty(), "`{guest}` has one build only");
        for (variant, boundary) in rest {
            assert_eq!(boundary, expected, "`{guest}.{variant}` and `{guest}.{first}` have different boundaries");
        }
    }
    // Spot checks of names a host derives from the IDL.
    let types = &by_guest["types"][0].1;
    assert!(types.exports.contains(&"types.echo_s8".to_string()), "{:?}", types.exports);
    assert!(types.descriptors.iter().any(|d| d.starts_with("export types package=karmem:fixtures wit=karmem:fixtures/types@ ")));
    let resources = &by_guest["resources"][0].1;
    assert!(resources.exports.contains(&"resources.[resource-drop]counter".to_string()), "{:?}", resources.exports);
    assert!(resources.imports.contains(&"karmem:host/[resource-drop]tally".to_string()), "{:?}", resources.imports);
    // A command is run by `_start`: `wasi:cli/run` is WASI, so neither
    // described nor exported as a message function.
    for (variant, command) in &by_guest["command"] {
        assert!(command.exports.is_empty() && command.descriptors.is_empty(), "command.{variant}: {command:?}");
    }
    Ok(())
}
