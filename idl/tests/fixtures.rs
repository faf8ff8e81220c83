//! The KarmemIDL corpus in `fixtures/idl/`: every good file parses, resolves
//! and formats idempotently; every `fail/*.km` fails with the diagnostic in the
//! `.stderr` beside it (`BLESS=1` rewrites those snapshots).

#![allow(
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/idl")
}

fn km_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "km"))
        .collect();
    files.sort();
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn paper_figures_are_all_present() {
    for figure in ["01", "03", "08", "09", "10", "13", "32", "35"] {
        let path = fixtures().join(format!("paper-fig{figure}.km"));
        assert!(path.exists(), "missing {}", path.display());
    }
}

#[test]
fn corpus_resolves_and_formats_idempotently() {
    let files = km_files(&fixtures());
    assert!(files.len() >= 10, "corpus too small: {files:?}");
    for path in files {
        let name = path.display().to_string();
        let source = read(&path);
        let schema = karmem_idl::load(&source, &name).unwrap_or_else(|e| panic!("error: {e}"));
        let printed = karmem_idl::print(schema.file());
        let reparsed = karmem_idl::parse(&printed)
            .unwrap_or_else(|e| panic!("{name}: printed text does not parse: {e}\n{printed}"));
        assert_eq!(
            reparsed.without_spans(),
            schema.file().without_spans(),
            "{name}: print changed the tree"
        );
        assert_eq!(
            karmem_idl::print(&reparsed),
            printed,
            "{name}: fmt is not idempotent"
        );
        karmem_idl::resolve(reparsed)
            .unwrap_or_else(|e| panic!("{name}: printed text does not resolve: {e:?}"));
    }
}

#[test]
fn canonical_examples_are_already_formatted() {
    let path = fixtures().join("constructs.km");
    let source = read(&path);
    let file = karmem_idl::parse(&source).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(karmem_idl::print(&file), source);
}

#[test]
fn fail_cases_match_their_snapshots() {
    let bless = std::env::var_os("BLESS").is_some();
    let files = km_files(&fixtures().join("fail"));
    assert!(files.len() >= 25, "only {} fail cases", files.len());
    let mut mismatches = Vec::new();
    for path in files {
        let name = format!(
            "fail/{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        );
        let source = read(&path);
        let report = match karmem_idl::load(&source, &name) {
            Ok(_) => panic!("{name} was accepted"),
            Err(diagnostics) => {
                assert!(!diagnostics.errors().is_empty());
                format!("{}\n", diagnostics.to_report())
            }
        };
        let snapshot = path.with_extension("stderr");
        if bless {
            std::fs::write(&snapshot, &report)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", snapshot.display()));
        } else {
            let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
            if expected != report {
                mismatches.push(format!("--- {name}: expected\n{expected}--- got\n{report}"));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "snapshots differ (BLESS=1 rewrites them):\n{}",
        mismatches.join("\n")
    );
}

/// Every ```km example in docs/IDL.md parses and prints back to a tree that
/// parses the same way (examples may refer to types declared in other examples,
/// so they are not resolved).
#[test]
fn documentation_examples_parse() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/IDL.md");
    let doc = read(&path);
    let mut examples = 0;
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```km\n") {
        let body = rest.get(start + 6..).unwrap_or("");
        let end = body.find("```").unwrap_or(body.len());
        let example = body.get(..end).unwrap_or("");
        let file = karmem_idl::parse(example).unwrap_or_else(|e| {
            panic!("docs/IDL.md example does not parse: {}\n{example}", karmem_idl::Diagnostics::new(vec![e], "IDL.md", example))
        });
        let reparsed = karmem_idl::parse(&karmem_idl::print(&file)).unwrap_or_default();
        assert_eq!(reparsed.without_spans(), file.without_spans());
        examples += 1;
        rest = body.get(end..).unwrap_or("");
    }
    assert!(examples >= 8, "only {examples} examples found");
}
