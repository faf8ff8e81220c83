//! `karmem-bridge run`: fixture components lowered by `karmem-bridge lower`
//! and run through the binary agree with the reference runner's recorded
//! values (`fixtures/<name>.expected`), and a lowered WASI command prints
//! what the component printed on wasmtime's component runtime.
//!
//! Invocations are taken from the `.expected` transcripts except those that
//! call the host import `karmem:fixtures/host` (the CLI has no way to
//! register host functions), use resource handles (`$name`), big generated
//! arguments (`@repeat`), abbreviated results or traps.
//!
//! `--link`: the lowered `client` fixture's imports served by the lowered
//! `counter` fixture, by pattern. Every run shares one temporary module cache
//! (`KARMEM_CACHE_DIR`), so a module compiles once per test binary.

#![allow(clippy::expect_used, reason = "test helpers: a temporary directory or a child process that cannot be set up fails the test")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The module cache shared by every run of this test binary.
fn cache_dir() -> &'static Path {
    static CACHE: OnceLock<tempfile::TempDir> = OnceLock::new();
    CACHE.get_or_init(|| tempfile::tempdir().expect("cache tempdir")).path()
}

fn bridge() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_karmem-bridge"));
    command.env("KARMEM_CACHE_DIR", cache_dir());
    command
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn lower(component: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{component}.wasm"));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).expect("output dir");
    }
    let input = root().join("fixtures/components").join(format!("{component}.wasm"));
    let status = bridge().arg("lower").arg(&input).arg("-o").arg(&out).output().expect("run lower");
    assert!(status.status.success(), "lower {component}: {}", String::from_utf8_lossy(&status.stderr));
    out
}

struct Case {
    call: String,
    expected: String,
}

/// Invocations of `fixture.expected` the CLI can run without a host.
fn cases(fixture: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(root().join(format!("fixtures/{fixture}.expected"))).expect("read expected");
    let mut cases = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((_, call)) = line.split_once('#') else { continue };
        let mut host = false;
        let mut result = None;
        while let Some(next) = lines.peek() {
            if !next.starts_with("  ") {
                break;
            }
            let next = lines.next().unwrap_or_default();
            if next.starts_with("  host:") || next.starts_with("  stdout") || next.starts_with("  stderr") {
                host = true;
            }
            if let Some(value) = next.strip_prefix("  => ") {
                result = Some(value.to_string());
            }
        }
        let Some(expected) = result else { continue };
        let skip = host
            || call.contains('$')
            || call.contains('@')
            || expected.contains(" bytes, fnv1a ")
            || expected.starts_with("trap")
            || line.contains("[constructor]")
            || line.contains("[method]")
            || line.contains("[static]");
        if !skip {
            cases.push(Case { call: call.to_string(), expected });
        }
    }
    cases
}

fn run_invoke(module: &Path, call: &str) -> Output {
    bridge().arg("run").arg(module).arg("--invoke").arg(call).output().expect("run run")
}

fn check_fixture(fixture: &str, at_least: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = lower(&format!("{fixture}.p2"), dir.path());
    // Each run compiles the module, so a sample keeps the test short.
    let cases: Vec<Case> = cases(fixture).into_iter().take(at_least).collect();
    assert!(cases.len() >= at_least, "{fixture}: only {} runnable invocations", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let out = run_invoke(&module, &case.call);
        let stdout = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
        if !out.status.success() || stdout != case.expected {
            failures.push(format!(
                "{}: expected `{}`, got `{stdout}` (exit {:?}, stderr {})",
                case.call,
                case.expected,
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
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
fn qualified_names_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = lower("basics.p2", dir.path());
    let out = run_invoke(&module, "basics.is-even(255)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), "false");

    let out = run_invoke(&module, "greet(\"ann\")");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("import `karmem:host`/`log` is not served"), "{stderr}");

    let out = run_invoke(&module, "nope()");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exports no function `nope`"));

    let component = root().join("fixtures/components/basics.p2.wasm");
    let out = run_invoke(&component, "add(1, 2)");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `karmem-bridge lower` on it first"));
}

#[test]
fn out_of_range_timeouts_are_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = lower("basics.p2", dir.path());
    for (timeout, message) in [
        ("1e30", "error: `--timeout 1000000000000000000000000000000`: more seconds than a timeout can hold\n"),
        ("-1", "error: `--timeout -1`: expected a positive number of seconds\n"),
        ("NaN", "error: `--timeout NaN`: expected a positive number of seconds\n"),
    ] {
        let out = bridge()
            .arg("run")
            .arg(&module)
            .arg(format!("--timeout={timeout}"))
            .args(["--invoke", "basics.is-even(2)"])
            .output()
            .expect("run run");
        assert_eq!(out.status.code(), Some(1), "--timeout {timeout}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), message, "--timeout {timeout}");
    }
}

#[test]
fn wasi_command_prints_what_the_component_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = lower("command.p2", dir.path());
    let sandbox = dir.path().join("sandbox");
    std::fs::create_dir(&sandbox).expect("sandbox");
    std::fs::write(sandbox.join("input.txt"), "first line\nsecond line\n").expect("input");
    let out = bridge()
        .arg("run")
        .arg(&module)
        .arg("--env")
        .arg("GREETING=hello from the host")
        .arg("--dir")
        .arg(format!("{}::/sandbox", sandbox.display()))
        .arg("--argv0")
        .arg("fixture")
        .arg("--")
        .arg("--flag")
        .arg("value")
        .output()
        .expect("run command");
    // fixtures/command.expected, first run.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "args: fixture --flag value\nGREETING=hello from the host\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "copied input.txt\n");
    assert_eq!(out.status.code(), Some(0));
    let copied = std::fs::read_to_string(sandbox.join("command-output.txt")).expect("output file");
    assert_eq!(copied, "FIRST LINE\nSECOND LINE\n");

    // Without the preopen the copy fails and the exit code says so.
    let out = bridge().arg("run").arg(&module).output().expect("run command");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not copy input.txt"));
}

fn run_linked(module: &Path, links: &[&Path], extra: &[&str], call: &str) -> Output {
    let mut command = bridge();
    command.arg("run").arg(module);
    for link in links {
        command.arg("--link").arg(link);
    }
    command.args(extra).arg("--invoke").arg(call).output().expect("run run")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

/// Two real lowered modules: `client`'s `karmem:counter` imports are served
/// by `counter`'s exports.
#[test]
fn link_serves_imports_from_another_lowered_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = lower("linked/client.core", dir.path());
    let counter = lower("linked/counter.core", dir.path());
    // Direct (what the WIT-lowered modules declare): one counter.
    assert_eq!(stdout(&run_linked(&client, &[&counter], &[], "bump(2, 3)")), "6");
    let sum: u32 = (0..1000).map(|i| i % 251).sum();
    assert_eq!(stdout(&run_linked(&client, &[&counter], &[], "client.send(1000)")), sum.to_string());
    // The host's pattern: a pool of two takes the four calls in turn.
    let pool = ["--pattern", "counter=pool:2"];
    assert_eq!(stdout(&run_linked(&client, &[&counter], &pool, "bump(1, 4)")), "2");
    // Fanout over two linked counters: both are called, the importer gets
    // the first one's result.
    let fanout = ["--pattern", "counter=fanout"];
    assert_eq!(stdout(&run_linked(&client, &[&counter, &counter], &fanout, "bump(1, 3)")), "3");

    // Without the link the import is not served, and says so.
    let out = run_invoke(&client, "bump(1, 1)");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("import `karmem:counter`/`incr` is not served"));
    let out = run_linked(&client, &[&counter], &["--pattern", "counter=sometimes"], "bump(1, 1)");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown pattern `sometimes`"));
}

/// `run` caches compiled modules where it is told, and not with `--no-cache`.
#[test]
fn run_caches_compiled_modules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = lower("linked/counter.core", dir.path());
    let cache = dir.path().join("cache");
    let entries = || -> usize {
        std::fs::read_dir(&cache)
            .map(|d| d.filter_map(Result::ok).filter(|e| e.path().extension().is_some_and(|x| x == "cwasm")).count())
            .unwrap_or(0)
    };
    let run = |extra: &[&str]| {
        let out = bridge().arg("run").arg(&module).args(extra).arg("--invoke").arg("incr(5)").output().expect("run");
        stdout(&out)
    };
    assert_eq!(run(&["--no-cache"]), "5");
    assert_eq!(entries(), 0);
    let flag = ["--cache-dir", cache.to_str().expect("utf-8 path")];
    assert_eq!(run(&flag), "5");
    assert_eq!(entries(), 1, "one compiled module stored");
    assert_eq!(run(&flag), "5", "and loaded again");
    assert_eq!(entries(), 1);
}

/// `--invoke` repeated: the calls run in order on one instance, one result
/// line each, so state carries over (the counter keeps its total); a call
/// that fails stops the run after the lines of the calls before it.
#[test]
fn repeated_invokes_share_one_instance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = lower("linked/counter.core", dir.path());
    let out = bridge()
        .arg("run")
        .arg(&module)
        .args(["--invoke", "incr(5)", "--invoke", "incr(2)", "--invoke", "counter.incr(10)"])
        .output()
        .expect("run");
    assert_eq!(stdout(&out), "5\n7\n17");

    let out = bridge()
        .arg("run")
        .arg(&module)
        .args(["--invoke", "incr(1)", "--invoke", "nope(1)", "--invoke", "incr(1)"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("`nope(1)` failed (call 2 of 3)"), "{stderr}");
}
