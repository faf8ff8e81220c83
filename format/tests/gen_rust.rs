//! The Rust code generator: generated code for every schema of the fixture
//! corpus (`fixtures/idl/*.km`) compiles against `karmem-format` without std,
//! also for `wasm32-unknown-unknown`; and a value written with generated
//! builders and read with generated views round-trips through the dynamic
//! decoder.

#![cfg(feature = "schema")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use karmem_format::gen_rust::generate;
use karmem_format::value::decode;
use karmem_format::{Layout, Limits};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn corpus() -> Vec<(String, String)> {
    let dir = workspace().join("fixtures/idl");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures/idl")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "km"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().replace('-', "_");
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

const DRIVER: &str = r#"
use karmem_format::builder::Builder;
use karmem_gen_check::paper_fig32::*;

fn main() {
    let mut b = Builder::new();
    let batch = TemperatureBatchBuilder::new_root(&mut b).unwrap();
    let readings = batch.alloc_readings(&mut b, 3, 3).unwrap();
    readings.timestamp_mut(&mut b).unwrap().copy_from_slice(&[10, 20, 30]);
    for (i, v) in [1.5f32, 2.5, 3.5].iter().enumerate() {
        readings.set_value(&mut b, i as u32, *v);
    }
    let bytes = b.finish();

    let view = TemperatureBatchView::root(&bytes).unwrap();
    let soa = view.readings().unwrap();
    assert_eq!(soa.len(), 3);
    let values = soa.value().unwrap().unwrap();
    assert_eq!(values.as_slice().unwrap().iter().sum::<f32>(), 7.5);
    let stamps = soa.timestamp().unwrap().unwrap();
    assert_eq!(stamps.iter().max(), Some(30));

    let mut a = Builder::new();
    let r = AnalysisResultBuilder::new_root(&mut a).unwrap();
    r.set_average_temperature(&mut a, 2.5);
    r.set_max_temperature(&mut a, 3.5);
    let result = a.finish();
    let rv = AnalysisResultView::root(&result).unwrap();
    assert_eq!((rv.average_temperature().unwrap(), rv.min_temperature().unwrap()), (2.5, 0.0));

    for byte in bytes.iter() {
        print!("{byte:02x}");
    }
    println!();
}
"#;

#[test]
fn generated_code_compiles_for_the_corpus_and_round_trips() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = workspace().join("target/gen-rust-check");
    let src = root.join("src");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    let mut lib = String::from("//! Generated code for every fixture schema.\n#![no_std]\nextern crate alloc;\n");
    for (name, source) in corpus() {
        let layout = common::layout(&source);
        let code = generate(&layout, &format!("fixtures/idl/{name}.km"));
        std::fs::write(src.join(format!("{name}.rs")), code).unwrap();
        lib.push_str(&format!("pub mod {name};\n"));
    }
    std::fs::write(src.join("lib.rs"), lib).unwrap();
    std::fs::write(src.join("bin/roundtrip.rs"), DRIVER).unwrap();
    let format_dir = workspace().join("format");
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[package]\nname = \"karmem-gen-check\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n\
             [dependencies]\nkarmem-format = {{ path = {:?}, default-features = false, features = [\"alloc\"] }}\n\n\
             [workspace]\n",
            format_dir.display().to_string()
        ),
    )
    .unwrap();

    let run = |args: &[&str]| {
        let out = Command::new(&cargo)
            .args(args)
            .arg("--offline")
            .current_dir(&root)
            .env("CARGO_TARGET_DIR", root.join("target"))
            .env_remove("RUSTFLAGS")
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "cargo {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    run(&["build", "--lib"]);
    let wasm = Command::new("rustup").args(["target", "list", "--installed"]).output();
    if wasm.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown")) {
        run(&["build", "--lib", "--target", "wasm32-unknown-unknown"]);
    }
    let hex = run(&["run", "--quiet", "--bin", "roundtrip"]);
    let hex = hex.trim();
    let bytes: Vec<u8> = (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap()).collect();

    let source = corpus().into_iter().find(|(n, _)| n == "paper_fig32").expect("paper-fig32.km").1;
    let layout: std::sync::Arc<Layout> = common::layout(&source);
    let ty = common::ty(&layout, "temperature_batch");
    let value = decode(&layout, ty, &bytes, &Limits::default()).expect("generated builder output decodes");
    let expected = common::wave(
        &layout,
        ty,
        "{readings: [{timestamp: 10, value: 1.5}, {timestamp: 20, value: 2.5}, {timestamp: 30, value: 3.5}]}",
    );
    assert_eq!(value, expected);
}
