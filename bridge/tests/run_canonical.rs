//! `karmem-bridge run` on modules lowered with `--abi canonical`: WAVE values
//! lowered and lifted by the canonical ABI agree with the reference runner's
//! recorded values (`fixtures/<name>.expected`), several `--invoke`s run on
//! one instance with one result line each, and what `run` cannot do for such
//! a module is an error naming it.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::indexing_slicing, reason = "test helpers: a child process that cannot be set up fails the test")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bridge(cache: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_karmem-bridge"));
    command.env("KARMEM_CACHE_DIR", cache);
    command
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn lower_canonical(component: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{component}.wasm"));
    let input = root().join("fixtures/components").join(format!("{component}.wasm"));
    let status = bridge(dir).args(["lower", "--abi", "canonical"]).arg(&input).arg("-o").arg(&out).output().expect("run lower");
    assert!(status.status.success(), "lower {component}: {}", String::from_utf8_lossy(&status.stderr));
    out
}

/// `(call, expected result)` of `fixture.expected` that need no host, no
/// resources and no abbreviation.
fn cases(fixture: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join(format!("fixtures/{fixture}.expected"))).expect("read expected");
    let mut cases = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((_, call)) = line.split_once('#') else { continue };
        // `calls-so-far` counts calls: the transcript's instances are not this one's.
        let mut skip = call.contains('$') || call.contains('@') || line.contains('[') || call.contains("calls-so-far");
        let mut result = None;
        while let Some(next) = lines.next_if(|l| l.starts_with("  ")) {
            skip |= next.starts_with("  host:") || next.starts_with("  stdout") || next.starts_with("  stderr");
            result = next.strip_prefix("  => ").map(str::to_string).or(result);
        }
        match result {
            Some(expected) if !skip && !expected.contains(" bytes, fnv1a ") && !expected.starts_with("trap") => {
                cases.push((call.to_string(), expected));
            }
            _ => {}
        }
    }
    cases
}

fn run(dir: &Path, module: &Path, calls: &[&str]) -> Output {
    let mut command = bridge(dir);
    command.arg("run").arg(module);
    for call in calls {
        command.arg("--invoke").arg(call);
    }
    command.output().expect("run run")
}

/// Every runnable invocation of `fixture`, in one `run` (one instance).
fn check_fixture(fixture: &str, at_least: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = lower_canonical(&format!("{fixture}.p2"), dir.path());
    let cases = cases(fixture);
    assert!(cases.len() >= at_least, "{fixture}: only {} runnable invocations", cases.len());
    let calls: Vec<&str> = cases.iter().map(|(c, _)| c.as_str()).collect();
    let out = run(dir.path(), &module, &calls);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{fixture}: exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), cases.len(), "{fixture}: one line per call:\n{stdout}");
    let failures: Vec<String> = cases
        .iter()
        .zip(&lines)
        .filter(|((_, expected), got)| expected != *got)
        .map(|((call, expected), got)| format!("{call}: expected `{expected}`, got `{got}`"))
        .collect();
    assert!(failures.is_empty(), "{fixture}: {} of {} differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn basics_agrees_with_the_reference() {
    check_fixture("basics", 8);
}

#[test]
fn types_agrees_with_the_reference() {
    check_fixture("types", 12);
}

#[test]
fn edges_agrees_with_the_reference() {
    check_fixture("edges", 5);
}

#[test]
fn state_carries_across_calls_and_errors_name_the_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = lower_canonical("basics.p2", dir.path());

    let out = run(dir.path(), &module, &["basics.add(1, 2)", "is-even(4)"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3\ntrue\n");

    // An import `run` does not serve traps with its name; earlier lines stay.
    let out = run(dir.path(), &module, &["add(2, 2)", "greet(\"ann\")"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "4\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("(call 2 of 2)") && stderr.contains("karmem:fixtures/host#log"), "{stderr}");

    let out = run(dir.path(), &module, &["nope()"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exports no function `nope`"));

    let out = run(dir.path(), &module, &["add(1)"]);
    assert_eq!(out.status.code(), Some(1));

    let out = run(dir.path(), &module, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--invoke"));

    let out = bridge(dir.path()).arg("run").arg(&module).arg("--link").arg(&module).args(["--invoke", "add(1, 2)"]).output().expect("run run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("need the Karmem ABI"));
}

#[test]
fn world_level_functions_keep_their_instance_across_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wat = dir.path().join("grow.wat");
    std::fs::write(
        &wat,
        r#"(component
            (core module $m
              (memory (export "mem") 1)
              (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))
            (core instance $i (instantiate $m))
            (func (export "grow") (param "x" u32) (result s32) (canon lift (core func $i "grow"))))"#,
    )
    .expect("write wat");
    let module = dir.path().join("grow.wasm");
    let out = bridge(dir.path()).args(["lower", "--abi", "canonical"]).arg(&wat).arg("-o").arg(&module).output().expect("run lower");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // memory.grow returns the old size: the second call sees the first's growth
    let out = run(dir.path(), &module, &["grow(2)", "grow(0)"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n3\n", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn exception_tags_shared_by_inner_modules_throw_and_catch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wat = root().join("fixtures/lowering/exception-tags/component.wat");
    let module = dir.path().join("tags.wasm");
    let out = bridge(dir.path()).args(["lower", "--abi", "canonical"]).arg(&wat).arg("-o").arg(&module).output().expect("run lower");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // `$thrower` throws the tag `$tags` defines; `$catcher` catches it and adds one.
    let out = run(dir.path(), &module, &["run(41)"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n", "{}", String::from_utf8_lossy(&out.stderr));
}
