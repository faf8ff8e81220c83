//! Schema compatibility over the pairs in `fixtures/idl/compat/<case>/`
//! (`old.km`, `new.km`): the report must equal `expected.txt` (`BLESS=1`
//! rewrites it), and exactly the cases named as safe have no breaking change.

#![allow(
    clippy::panic,
    reason = "test code: a failed step fails the test"
)]

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

mod mutations {
    use karmem_idl::ast::*;
    use proptest::prelude::*;

    fn corpus() -> File {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/idl/constructs.km");
        let source = std::fs::read_to_string(path).unwrap_or_default();
        karmem_idl::parse(&source).unwrap_or_default()
    }

    fn schema(file: &File) -> karmem_idl::Schema {
        let printed = karmem_idl::print(file);
        karmem_idl::load(&printed, "mutated.km").unwrap_or_else(|e| panic!("error: {e}\n{printed}"))
    }

    fn dynamic_structs(file: &mut File) -> Vec<&mut StructDef> {
        file.items
            .iter_mut()
            .filter_map(|item| match item {
                Item::Struct(s) if s.evolution == Evolution::Dynamic => Some(s),
                _ => None,
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Appending fields that read as zero, adding items and adding
        /// functions to dynamic interfaces never breaks anything.
        #[test]
        fn safe_evolution_is_safe(which in any::<prop::sample::Index>(), new_items in 0usize..3) {
            let old = corpus();
            let mut new = old.clone();
            let mut structs = dynamic_structs(&mut new);
            let len = structs.len();
            if let Some(s) = structs.get_mut(which.index(len.max(1))) {
                let ty = TypeRef::new(TypeKind::Option(Box::new(TypeRef::new(TypeKind::Prim(Prim::U8)))));
                s.fields.push(Field { name: Ident::new("zz-appended"), ty, default: None, docs: Docs::default(), span: Span::DUMMY });
            }
            for i in 0..new_items {
                new.items.push(Item::Resource(ResourceDef { name: Ident::new(format!("zz-new-{i}")), docs: Docs::default(), span: Span::DUMMY }));
            }
            for item in &mut new.items {
                if let Item::Interface(i) = item && i.evolution == Evolution::Dynamic {
                    i.members.push(Member::Function(FunctionDef {
                        name: Ident::new("zz-added"),
                        syntax: FnSyntax::Arrow,
                        params: Vec::new(),
                        results: Vec::new(),
                        docs: Docs::default(),
                        span: Span::DUMMY,
                    }));
                }
            }
            let changes = karmem_idl::compat::compare(&schema(&old), &schema(&new));
            prop_assert!(!changes.is_empty());
            prop_assert!(changes.iter().all(|c| !c.is_breaking()), "{}", karmem_idl::compat::report(&changes));
        }

        /// Removing any field of any struct breaks, and the report names it.
        #[test]
        fn removing_a_field_breaks(which in any::<prop::sample::Index>(), field in any::<prop::sample::Index>()) {
            let old = corpus();
            let mut new = old.clone();
            let mut structs: Vec<&mut StructDef> = new
                .items
                .iter_mut()
                .filter_map(|item| match item {
                    Item::Struct(s) if !s.fields.is_empty() => Some(s),
                    _ => None,
                })
                .collect();
            let len = structs.len();
            let Some(s) = structs.get_mut(which.index(len.max(1))) else { return Ok(()) };
            let removed = s.fields.remove(field.index(s.fields.len()));
            let changes = karmem_idl::compat::compare(&schema(&old), &schema(&new));
            let report = karmem_idl::compat::report(&changes);
            prop_assert!(changes.iter().any(|c| c.is_breaking()), "{report}");
            let named = format!("field `{}`", removed.name.name);
            prop_assert!(report.contains(&named), "{report}");
        }
    }
}
