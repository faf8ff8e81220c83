//! Schema compatibility over the pairs in `fixtures/idl/compat/<case>/`
//! (`old.km`, `new.km`): the report must equal `expected.txt` (`BLESS=1`
//! rewrites it), and exactly the cases named as safe have no breaking change.

// Test harness: a failed setup step is a failed test.
#![allow(clippy::panic)]

use std::path::{Path, PathBuf};

const SAFE_CASES: [&str; 2] = ["paper-fig08-to-fig10", "safe-additions"];

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/idl/compat");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

fn load(path: &Path) -> karmem_idl::Schema {
    let source =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    karmem_idl::load(&source, &path.display().to_string()).unwrap_or_else(|e| panic!("error: {e}"))
}

#[test]
fn compat_reports_match_their_snapshots() {
    let bless = std::env::var_os("BLESS").is_some();
    let cases = cases();
    assert!(cases.len() >= 8);
    let mut mismatches = Vec::new();
    for case in cases {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let changes =
            karmem_idl::compat::compare(&load(&case.join("old.km")), &load(&case.join("new.km")));
        let breaking = changes.iter().any(|c| c.is_breaking());
        assert_eq!(
            breaking,
            !SAFE_CASES.contains(&name.as_str()),
            "{name}: {changes:#?}"
        );
        assert!(!changes.is_empty(), "{name}: no change found");
        let report = karmem_idl::compat::report(&changes);
        let expected_path = case.join("expected.txt");
        if bless {
            std::fs::write(&expected_path, &report).unwrap_or_else(|e| panic!("{e}"));
        } else if std::fs::read_to_string(&expected_path).unwrap_or_default() != report {
            mismatches.push(format!("--- {name}\n{report}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "reports differ (BLESS=1 rewrites them):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn a_schema_is_compatible_with_itself() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/idl/constructs.km");
    let schema = load(&corpus);
    assert_eq!(karmem_idl::compat::compare(&schema, &schema), Vec::new());
}
