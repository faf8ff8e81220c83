//! Conformance: wit-bindgen's runtime tests, composed (`../shared/conformance/wit-bindgen`
//! from the project root, see its README), lowered and run on four preview1 hosts.
//!
//! Owns: the run of the non-async composed tests (`parts/MANIFEST`, `async=no`): each
//! is lowered with `karmem_bridge::lower` and default options, then its `root.run` is
//! called with the empty Karmem message, after `_initialize` and `KarmemInit`, in a
//! fresh instance with a bare WASI (no args, env or preopens) on wasmtime with the
//! component model off, wasmi, node and wazero. A test passes on a runtime when the
//! call returns: wit-bindgen's runners report a failed assertion as a panic, i.e. a
//! trap. The failures must be exactly [`EXPECTED_FAILURES`].
//!
//! Leaves to others: node and wazero themselves, run through their batch runners
//! (`tests/runners/`, made available by `scripts/runners.sh`), which own the same
//! call sequence on their side.
//!
//! Without the conformance directory the test says why and passes. Without node or
//! the wazero runner that runtime is skipped, unless `CI` is set: then it fails.
//! `KARMEM_CONFORMANCE_DIR` names another conformance directory (then it must exist).
//! Run with `-- --nocapture` to see the report when the test passes.

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failed step fails the test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// Every runtime, in report order.
const RUNTIMES: [&str; 4] = ["wasmtime", "wasmi", "node", "wazero"];

/// The export every wit-bindgen runner has: `run: func()` at the world's root.
const RUN_EXPORT: &str = "root.run";

/// A test expected to fail, on which runtimes, and why.
struct ExpectedFailure {
    test: &'static str,
    runtimes: &'static [&'static str],
    reason: &'static str,
}

/// The (test, runtime) pairs that fail today. Shrink this list as fixes land: a pair
/// that newly passes fails the test so that it does. Empty since all 31 non-async
/// tests lower and pass (14b94e9); an entry reads
/// `ExpectedFailure { test: "name", runtimes: &RUNTIMES, reason: "does not lower: ..." }`.
const EXPECTED_FAILURES: &[ExpectedFailure] = &[];

#[test]
fn composed_wit_bindgen_tests_run_on_four_runtimes() {
    let Some(suite) = suite_dir() else { return };
    let tests = manifest(&suite);
    assert!(
        !tests.is_empty(),
        "`{}` lists no `async=no` test",
        suite.join("parts/MANIFEST").display()
    );

    // runners.sh may build the wazero runner: it does so while the tests are lowered.
    std::thread::spawn(external_runners);
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let done = lower_and_run_in_process(&suite, &tests, scratch.path());

    // outcomes[runtime][test]: `Ok` or why it failed.
    let mut outcomes: BTreeMap<&str, BTreeMap<&str, Result<(), String>>> = BTreeMap::new();
    let mut modules = Vec::new(); // (test, path) of every module that lowered
    for (test, done) in tests.iter().zip(done) {
        match done {
            Done::Lowered {
                path,
                wasmtime,
                wasmi,
            } => {
                outcomes
                    .entry("wasmtime")
                    .or_default()
                    .insert(test, wasmtime);
                outcomes.entry("wasmi").or_default().insert(test, wasmi);
                modules.push((test.as_str(), path));
            }
            Done::NotLowered(reason) => {
                for runtime in RUNTIMES {
                    outcomes
                        .entry(runtime)
                        .or_default()
                        .insert(test, Err(format!("lowering failed: {reason}")));
                }
            }
        }
    }

    // One batch per external runtime, both at once.
    let runners = external_runners();
    let ci = in_ci();
    let mut skipped: Vec<(&str, String)> = Vec::new();
    let mut batches = Vec::new();
    for runtime in ["node", "wazero"] {
        match runners.commands.get(runtime) {
            Some(command) => batches.push((runtime, spawn_batch(command, &modules))),
            None => skipped.push((runtime, runners.why_missing(runtime))),
        }
    }
    for (runtime, child) in batches {
        let lines = finish_batch(runtime, child, modules.len());
        let results = outcomes.entry(runtime).or_default();
        for ((test, _), line) in modules.iter().zip(lines) {
            results.insert(test, if line == "ok" { Ok(()) } else { Err(line) });
        }
    }

    // The report.
    let mut failures = BTreeSet::new();
    let mut compared = Vec::new();
    for runtime in RUNTIMES {
        if let Some((_, why)) = skipped.iter().find(|(name, _)| *name == runtime) {
            let verdict = if ci {
                "missing, and CI is set: a failure"
            } else {
                "skipped"
            };
            println!("conformance composed {runtime}: {verdict} ({why})");
            continue;
        }
        compared.push(runtime);
        let results = outcomes.get(runtime).cloned().unwrap_or_default();
        let failed: Vec<_> = results
            .iter()
            .filter_map(|(test, r)| r.as_ref().err().map(|e| (*test, e)))
            .collect();
        println!(
            "conformance composed {runtime}: {} passed, {} failed",
            results.len() - failed.len(),
            failed.len()
        );
        for (test, reason) in failed {
            println!("  FAIL {test} on {runtime}: {reason}");
            failures.insert((test.to_owned(), runtime));
        }
    }

    // The verdict.
    let expected: BTreeSet<(String, &str)> = EXPECTED_FAILURES
        .iter()
        .flat_map(|entry| {
            entry
                .runtimes
                .iter()
                .map(|runtime| (entry.test.to_owned(), *runtime))
        })
        .filter(|(_, runtime)| compared.contains(runtime))
        .collect();
    let mut problems = Vec::new();
    for entry in EXPECTED_FAILURES {
        if !tests.iter().any(|test| test == entry.test) {
            problems.push(format!(
                "EXPECTED_FAILURES names `{}`, which is not an `async=no` test of the suite",
                entry.test
            ));
        }
    }
    for (test, runtime) in failures.difference(&expected) {
        problems.push(format!("unexpected failure: {test} on {runtime} (fix it, or add it to EXPECTED_FAILURES with a reason)"));
    }
    for (test, runtime) in expected.difference(&failures) {
        let reason = EXPECTED_FAILURES
            .iter()
            .find(|e| e.test == test)
            .map_or("", |e| e.reason);
        problems.push(format!(
            "newly passing: {test} on {runtime} (expected to fail: {reason}); remove it from EXPECTED_FAILURES"
        ));
    }
    if ci {
        for (runtime, why) in &skipped {
            problems.push(format!("{runtime} is unavailable and CI is set: {why}"));
        }
    }
    assert!(
        problems.is_empty(),
        "conformance composed: the failures differ from EXPECTED_FAILURES:\n{}",
        problems.join("\n")
    );
}

/// The harness tells a return from a trap and from `proc_exit` on every runtime, so
/// that the suite's passes mean something.
#[test]
fn the_harness_sees_traps_and_exits() {
    let module = |body: &str| {
        wat::parse_str(format!(
            r#"(module
                (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                (memory (export "memory") 1)
                (func (export "KarmemInit") (result i64) i64.const 0)
                (func (export "{RUN_EXPORT}") (param i32 i32) (result i64) {body}))"#
        ))
        .expect("a valid module")
    };
    let cases = [
        ("returns", module("i64.const 0"), "ok"),
        ("traps", module("unreachable"), "trap"),
        (
            "exits",
            module("i32.const 3 call $exit unreachable"),
            "exit: 3",
        ),
    ];
    let kind = |result: Result<(), String>| match result {
        Ok(()) => "ok".to_owned(),
        Err(reason) if reason.starts_with("trap: ") => "trap".to_owned(),
        Err(reason) => reason,
    };
    let scratch = tempfile::tempdir().expect("a temporary directory");
    let mut modules = Vec::new();
    for (name, wasm, expected) in &cases {
        assert_eq!(
            kind(run_wasmtime(&wasmtime::Engine::default(), wasm)),
            *expected,
            "{name} on wasmtime"
        );
        assert_eq!(
            kind(run_wasmi(&wasmi::Engine::default(), wasm)),
            *expected,
            "{name} on wasmi"
        );
        let path = scratch.path().join(format!("{name}.wasm"));
        std::fs::write(&path, wasm).expect("writing a module");
        modules.push((*name, path));
    }
    for (runtime, command) in &external_runners().commands {
        let lines = finish_batch(runtime, spawn_batch(command, &modules), modules.len());
        for ((name, _, expected), line) in cases.iter().zip(lines) {
            assert_eq!(
                kind(if line == "ok" { Ok(()) } else { Err(line) }),
                *expected,
                "{name} on {runtime}"
            );
        }
    }
}

/// The suite's directory, or `None` (after saying why) when it is absent.
fn suite_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("KARMEM_CONFORMANCE_DIR") {
        let suite = PathBuf::from(dir).join("wit-bindgen");
        assert!(
            suite.is_dir(),
            "KARMEM_CONFORMANCE_DIR is set but `{}` is not a directory",
            suite.display()
        );
        return Some(suite);
    }
    let suite = project_root().join("../shared/conformance/wit-bindgen");
    if suite.is_dir() {
        return Some(suite);
    }
    println!(
        "conformance composed: skipped, `{}` does not exist (CI has the conformance material at \
         `../shared/conformance` from the project root; KARMEM_CONFORMANCE_DIR names another)",
        suite.display()
    );
    None
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether this is a CI run (`CI` set, as CI services do, and not `false` or `0`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

/// The `async=no` tests of `parts/MANIFEST`, in its order: `name async=yes|no parts...`.
fn manifest(suite: &Path) -> Vec<String> {
    let path = suite.join("parts/MANIFEST");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading `{}`: {e}", path.display()));
    let mut tests = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.get(1).copied() {
            Some("async=no") => tests.push(fields[0].to_owned()),
            Some("async=yes") => {}
            _ => panic!("`{}`: malformed line `{line}`", path.display()),
        }
    }
    tests
}

/// What became of one test before the external runtimes.
enum Done {
    /// Lowered to `path`, with how `run` went on wasmtime and wasmi.
    Lowered {
        path: PathBuf,
        wasmtime: Result<(), String>,
        wasmi: Result<(), String>,
    },
    /// The first line of the lowering error.
    NotLowered(String),
}

/// Lowers every test's composed component into `scratch` and runs it on wasmtime and
/// wasmi, a test at a time on each core (lowering and both runtimes are debug builds:
/// this is most of the test's time).
fn lower_and_run_in_process(suite: &Path, tests: &[String], scratch: &Path) -> Vec<Done> {
    let wasmtime_engine = wasmtime::Engine::default();
    let wasmi_engine = wasmi::Engine::default();
    let next = AtomicUsize::new(0);
    let done = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..std::thread::available_parallelism().map_or(2, usize::from) {
            std::thread::Builder::new()
                // Debug builds of the lowering recurse with big frames.
                .stack_size(16 << 20)
                .spawn_scoped(scope, || {
                    while let Some(test) = tests.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let component = suite.join("composed").join(format!("{test}.wasm"));
                        let outcome = match unwinding(|| lower_one(&component)) {
                            Ok(module) => {
                                let path = scratch.join(format!("{test}.wasm"));
                                std::fs::write(&path, &module).expect("writing a lowered module");
                                let wasmtime =
                                    unwinding(|| run_wasmtime(&wasmtime_engine, &module));
                                let wasmi = unwinding(|| run_wasmi(&wasmi_engine, &module));
                                Done::Lowered {
                                    path,
                                    wasmtime,
                                    wasmi,
                                }
                            }
                            Err(reason) => Done::NotLowered(reason),
                        };
                        done.lock()
                            .expect("no worker panics")
                            .insert(test.clone(), outcome);
                    }
                })
                .expect("spawning a worker thread");
        }
    });
    let mut done = done.into_inner().expect("no worker panics");
    tests
        .iter()
        .map(|test| done.remove(test).expect("every test was done"))
        .collect()
}

/// `f()`, or a panic's message as its error: a panic in the lowering or a host is one
/// test's failure, not the end of the run.
fn unwinding<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(format!("panicked: {}", first_line(&message)))
    })
}

fn lower_one(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("reading `{}`: {e}", path.display()))?;
    karmem_bridge::lower(&bytes, &karmem_bridge::LowerOptions::default())
        .map(|lowered| lowered.module)
        .map_err(|error| first_line(&format!("{error:#}")))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_owned()
}

/// The guest's last line on stderr (a Rust panic's message), to go with a trap.
fn with_stderr(reason: String, stderr: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr);
    match stderr.lines().rev().find(|line| !line.trim().is_empty()) {
        Some(line) => format!("{reason} (stderr: {})", line.trim()),
        None => reason,
    }
}

/// wasmtime with the component model off, WASI preview1 (`wasmtime_wasi::p1`).
fn run_wasmtime(engine: &wasmtime::Engine, wasm: &[u8]) -> Result<(), String> {
    use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

    let module = wasmtime::Module::new(engine, wasm)
        .map_err(|e| format!("error: compile: {}", first_line(&format!("{e:#}"))))?;
    let mut linker: wasmtime::Linker<wasmtime_wasi::p1::WasiP1Ctx> = wasmtime::Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx)
        .map_err(|e| format!("error: {e}"))?;
    let stderr = MemoryOutputPipe::new(1 << 20);
    let wasi = wasmtime_wasi::WasiCtxBuilder::new()
        .stdout(MemoryOutputPipe::new(1 << 20))
        .stderr(stderr.clone())
        .build_p1();
    let mut store = wasmtime::Store::new(engine, wasi);
    let outcome = |error: wasmtime::Error, prefix: &str| {
        if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return format!("exit: {}", exit.0);
        }
        let reason = match error.downcast_ref::<wasmtime::Trap>() {
            Some(trap) => format!("trap: {prefix}{trap}"),
            None => format!("trap: {prefix}{}", first_line(&format!("{error:#}"))),
        };
        with_stderr(reason, &stderr.contents())
    };
    let instance = linker
        .instantiate(&mut store, &module)
        .map_err(|e| outcome(e, "instantiate: "))?;
    if instance.get_func(&mut store, "_initialize").is_some() {
        let init = instance
            .get_typed_func::<(), ()>(&mut store, "_initialize")
            .map_err(|e| format!("error: {e}"))?;
        init.call(&mut store, ())
            .map_err(|e| outcome(e, "_initialize: "))?;
    }
    if instance.get_func(&mut store, "KarmemInit").is_some() {
        let init = instance
            .get_typed_func::<(), i64>(&mut store, "KarmemInit")
            .map_err(|e| format!("error: {e}"))?;
        init.call(&mut store, ())
            .map_err(|e| outcome(e, "KarmemInit: "))?;
    }
    let run = instance
        .get_typed_func::<(i32, i32), i64>(&mut store, RUN_EXPORT)
        .map_err(|e| format!("error: {e}"))?;
    run.call(&mut store, (0, 0))
        .map(drop)
        .map_err(|e| outcome(e, ""))
}

/// wasmi, WASI preview1 (`wasmi_wasi`).
fn run_wasmi(engine: &wasmi::Engine, wasm: &[u8]) -> Result<(), String> {
    use std::io::Cursor;
    use std::sync::{Arc, RwLock};
    use wasmi_wasi::wasi_common::pipe::{ReadPipe, WritePipe};

    let module = wasmi::Module::new(engine, wasm).map_err(|e| format!("error: compile: {e}"))?;
    let mut linker = wasmi::Linker::<wasmi_wasi::WasiCtx>::new(engine);
    wasmi_wasi::add_to_linker(&mut linker, |ctx| ctx).map_err(|e| format!("error: {e}"))?;
    let stderr = Arc::new(RwLock::new(Cursor::new(Vec::new())));
    let wasi = wasmi_wasi::WasiCtxBuilder::new()
        .stdin(Box::new(ReadPipe::from(Vec::<u8>::new())))
        .stdout(Box::new(WritePipe::new_in_memory()))
        .stderr(Box::new(WritePipe::from_shared(stderr.clone())))
        .build();
    let mut store = wasmi::Store::new(engine, wasi);
    let outcome = |error: wasmi::Error, prefix: &str| {
        if let Some(code) = error.i32_exit_status() {
            return format!("exit: {code}");
        }
        let bytes = stderr
            .read()
            .map(|guard| guard.get_ref().clone())
            .unwrap_or_default();
        with_stderr(
            format!("trap: {prefix}{}", first_line(&error.to_string())),
            &bytes,
        )
    };
    let instance = linker
        .instantiate_and_start(&mut store, &module)
        .map_err(|e| outcome(e, "instantiate: "))?;
    if instance.get_func(&store, "_initialize").is_some() {
        let init = instance
            .get_typed_func::<(), ()>(&store, "_initialize")
            .map_err(|e| format!("error: {e}"))?;
        init.call(&mut store, ())
            .map_err(|e| outcome(e, "_initialize: "))?;
    }
    if instance.get_func(&store, "KarmemInit").is_some() {
        let init = instance
            .get_typed_func::<(), i64>(&store, "KarmemInit")
            .map_err(|e| format!("error: {e}"))?;
        init.call(&mut store, ())
            .map_err(|e| outcome(e, "KarmemInit: "))?;
    }
    let run = instance
        .get_typed_func::<(i32, i32), i64>(&store, RUN_EXPORT)
        .map_err(|e| format!("error: {e}"))?;
    run.call(&mut store, (0, 0))
        .map(drop)
        .map_err(|e| outcome(e, ""))
}

/// What `scripts/runners.sh --print-env` offers: the command that runs one batch, by
/// runtime, and its notes on stderr (why a runtime is missing).
struct Runners {
    commands: BTreeMap<&'static str, Vec<String>>,
    notes: String,
}

impl Runners {
    /// runners.sh's note on why `runtime` is missing (each ends `no RUNTIME runner`).
    fn why_missing(&self, runtime: &str) -> String {
        let marker = format!("no {runtime} runner");
        self.notes
            .lines()
            .find(|line| line.contains(&marker))
            .map_or_else(
                || format!("`scripts/runners.sh --print-env` offers no {runtime} runner"),
                |line| line.trim().to_owned(),
            )
    }
}

/// The batch runners, from one run of runners.sh per process (it may build the wazero
/// runner; both tests ask, and the second waits for the first).
fn external_runners() -> &'static Runners {
    static RUNNERS: OnceLock<Runners> = OnceLock::new();
    RUNNERS.get_or_init(|| {
        let script = project_root().join("scripts/runners.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg("--print-env")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running `{}`: {e}", script.display()));
        let notes = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "`{} --print-env` failed ({}):\n{notes}",
            script.display(),
            output.status
        );
        let mut commands = BTreeMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let command = match line.split_once('=') {
                Some(("WAZERO_RUNNER", path)) => ("wazero", vec![path.to_owned()]),
                Some(("NODE_RUNNER", path)) => (
                    "node",
                    vec![
                        "node".to_owned(),
                        "--no-warnings".to_owned(),
                        path.to_owned(),
                    ],
                ),
                _ => panic!(
                    "`{} --print-env` printed an unknown line `{line}`",
                    script.display()
                ),
            };
            commands.insert(command.0, command.1);
        }
        Runners { commands, notes }
    })
}

/// Starts one batch: a `MODULE_PATH<TAB>EXPORT` line per module, stdin then closed.
fn spawn_batch(command: &[String], modules: &[(&str, PathBuf)]) -> Child {
    let (program, args) = command.split_first().expect("a runner command");
    let mut child = Command::new(program)
        .args(args)
        .arg("--batch")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting `{}`: {e}", command.join(" ")));
    let mut input = String::new();
    for (_, path) in modules {
        input.push_str(&format!("{}\t{RUN_EXPORT}\n", path.display()));
    }
    // A few KiB: the pipe takes it all before the runner reads a line. A runner that
    // died early shows in `finish_batch`, with its stderr.
    let mut stdin = child.stdin.take().expect("a piped stdin");
    let _ = stdin.write_all(input.as_bytes());
    child
}

/// A batch's result lines, one per module.
fn finish_batch(runtime: &str, child: Child, modules: usize) -> Vec<String> {
    let output = child
        .wait_with_output()
        .expect("waiting for a batch runner");
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        output.status.success() && lines.len() == modules,
        "the {runtime} batch runner exited with {} after {} result lines of {modules}; its stderr ends:\n{}",
        output.status,
        lines.len(),
        tail(&output.stderr, 20),
    );
    lines
}

fn tail(bytes: &[u8], count: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// The same tests through `run --link`: every part of a composition (runner,
/// tests, intermediates; `parts/MANIFEST`) lowered on its own, the runner's
/// imports served from the others by karmem-runtime's `Composition` (WIT
/// identity, layers served from below), `run()` called on the runner.
#[test]
fn composed_parts_run_linked_on_karmem_runtime() {
    let Some(suite) = suite_dir() else { return };
    let path = suite.join("parts/MANIFEST");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading `{}`: {e}", path.display()));
    let compositions: Vec<Vec<String>> = text
        .lines()
        .map(|line| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .filter(|fields| fields.get(1).map(String::as_str) == Some("async=no"))
        .collect();
    assert!(!compositions.is_empty(), "`{}` lists no `async=no` test", path.display());
    let runtime = std::sync::Arc::new(
        karmem_runtime::Runtime::new(karmem_runtime::RuntimeConfig::default()).expect("a karmem runtime"),
    );
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..std::thread::available_parallelism().map_or(2, usize::from) {
            std::thread::Builder::new()
                .stack_size(16 << 20)
                .spawn_scoped(scope, || {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(fields) = compositions.get(i) else { break };
                        let outcome = unwinding(|| run_linked(&suite, &runtime, &fields[2..]));
                        outcomes.lock().expect("outcomes").insert(fields[0].clone(), outcome);
                    }
                })
                .expect("a thread");
        }
    });
    let outcomes = outcomes.into_inner().expect("outcomes");
    let failed: Vec<String> = outcomes
        .iter()
        .filter_map(|(test, outcome)| outcome.as_ref().err().map(|why| format!("  FAIL {test}: {why}")))
        .collect();
    println!("conformance composed --link: {} passed, {} failed", outcomes.len() - failed.len(), failed.len());
    for line in &failed {
        println!("{line}");
    }
    assert!(failed.is_empty(), "linked parts failed:\n{}", failed.join("\n"));
}

/// Lowers `parts` (the runner first) and calls the runner's `run()` with the
/// others linked.
fn run_linked(suite: &Path, runtime: &std::sync::Arc<karmem_runtime::Runtime>, parts: &[String]) -> Result<(), String> {
    use karmem_runtime::compose::Composition;
    use karmem_runtime::invoke::SessionOptions;
    let composition = Composition::new(std::sync::Arc::clone(runtime));
    let mut runner = None;
    for part in parts {
        let lowered = lower_one(&suite.join("parts").join(part)).map_err(|e| format!("lowering `{part}`: {e}"))?;
        let id = composition.add(part, &lowered, SessionOptions::default()).map_err(|e| format!("{e:#}"))?;
        runner.get_or_insert(id);
    }
    let runner = runner.ok_or("no parts")?;
    let mut session = composition.instantiate(runner).map_err(|e| first_line(&format!("{e:#}")))?;
    session
        .invoke("root", "run", &karmem_format::Value::Record(Vec::new()))
        .map(|_| ())
        .map_err(|e| first_line(&format!("{e:#}")))
}
