//! Conformance: wasmtime's component-model wast scripts (`../shared/conformance/wasmtime-wast`
//! from the project root, see its README), run on wasmtime 48's component runtime as the
//! reference and lowered by karmem-bridge under `--abi canonical` and `--abi karmem`.
//!
//! Owns: the run. Every script is parsed with the `wast` crate and its directives are played
//! in order. A component (`(component ...)`, `(component instance $i $def)`) is instantiated
//! on the reference with the host items wasmtime's own wast runner provides (`host`, see
//! [`spectest`]) and lowered with `karmem_bridge::lower` under each ABI; the lowered modules
//! run on wasmtime with the component model off: the canonical one called with core values
//! flattened per the canonical ABI (`karmem_tests::canonical_host`), the Karmem one through
//! its edge (`karmem_runtime::invoke::Session`, WAVE in and out). Each directive is a check
//! on each ABI: a component instantiates (or traps, for `assert_trap` on a component), an
//! `invoke` returns what the reference returns, an `assert_return` returns the script's
//! values, an `assert_trap` traps, an `assert_invalid` component is refused by the lowering.
//!
//! The engine a script is written for: its leading `;;! key = value` lines ([`ScriptConfig`]),
//! read as wasmtime's own wast runner reads them. The reference engine has every feature those
//! lines may ask for on. A script declaring `multi_memory = true` is lowered for a multi-memory
//! engine (`--multi-memory`) under both ABIs, by default: one 32-bit memory for the whole
//! composition cannot hold what such a script may grow (`big-strings.wast` grows two
//! components' memories towards 4 GiB each). A script declaring `hogs_memory = true` (wasmtime
//! skips those where memory growth is not virtual) runs like any other: every engine here is
//! wasmtime, whose memories are reserved address space made accessible on growth (the
//! reference's, and karmem-runtime's mmap-reserved ones for the lowered modules), and the
//! copying adapters write no more than a string needs (docs/LOWERING.md), so growing to 4 GiB
//! commits nothing. No engine that commits memory on growth (wasmi's memory is a `Vec`) runs
//! these scripts. The report lists each script's configuration in a `NOTE` line and prints the
//! peak resident size of the run, which must stay under [`PEAK_RESIDENT_LIMIT`].
//!
//! Out of scope, listed with the reason and not counted: whole scripts under `async/`,
//! components that validate only with component-model async (its own issue), components the
//! lowering refuses (the refusal is printed), core-wasm directives.
//!
//! Failing checks are expected today (issue 17 is about them): the test fails only when the
//! runner breaks, something panics (the lowering or a host), or an ABI's pass count falls below
//! its floor in [`FLOORS`] (raise it as fixes land). Without the directory the test says why
//! and passes; `KARMEM_CONFORMANCE_DIR` names another conformance directory (then it must
//! exist); `KARMEM_CONFORMANCE_SCRIPTS=big-strings,strings` runs only the scripts whose names
//! contain one of those words (floors are not applied then). `-- --nocapture` shows the report.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a broken runner fails the test"
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use karmem_tests::canonical_host::CanonicalRunner;
use karmem_tests::harness::{Completion, Runner};
use karmem_tests::invocation::{Action, Arg, Call, Invocation};
use karmem_tests::value::Value;
use wasmtime::component::types::ComponentFunc;
use wasmtime::component::{Component, Linker, Type, Val};
use wasmtime::{Config, Engine, Store};
use wast::component::WastVal;
use wast::parser::{self, ParseBuffer};
use wast::{QuoteWat, Wast, WastArg, WastDirective, WastExecute, WastInvoke, WastRet, Wat};

/// The lowest pass counts accepted, per ABI (measured; raise them as fixes land).
const FLOORS: [(Abi, usize); 2] = [(Abi::Canonical, 339), (Abi::Karmem, 338)];

/// The most the whole run may keep resident (peak, `VmHWM`; Linux only). Measured: 64 MiB for
/// the sample of 73 scripts. Memory growth must stay virtual: the run once kept 13 GiB when the
/// copying adapters wrote a string's worst case before asking the callee's `realloc` for more.
const PEAK_RESIDENT_LIMIT: u64 = 2 << 30;

/// Only the scripts whose names contain one of these comma-separated words.
const SCRIPTS_VARIABLE: &str = "KARMEM_CONFORMANCE_SCRIPTS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Abi {
    Canonical,
    Karmem,
}

const ABIS: [Abi; 2] = [Abi::Canonical, Abi::Karmem];

/// The engine a script is written for: its leading `;;! key = value` lines, the test
/// configuration wasmtime's wast runner (`crates/test-util`) reads from the same place.
#[derive(Debug, Default, Clone)]
struct ScriptConfig {
    /// `multi_memory = true`: written for a multi-memory engine, so its components are
    /// lowered with `--multi-memory` under both ABIs (docs/LOWERING.md, "One memory:
    /// partitions", says why one 32-bit memory cannot hold every composition).
    multi_memory: bool,
    /// `hogs_memory = true`: grows memories by GiBs. wasmtime skips such scripts where growth
    /// commits memory; every engine here keeps it virtual (see the module docs).
    hogs_memory: bool,
    /// The lines as written (`key = value`), for the report.
    settings: Vec<String>,
}

impl ScriptConfig {
    /// The leading `;;!` lines of `text`; later ones are ordinary comments, as for wasmtime.
    fn of(text: &str) -> ScriptConfig {
        let mut config = ScriptConfig::default();
        for setting in text.lines().map_while(|line| line.trim_start().strip_prefix(";;!")) {
            let setting = setting.trim();
            if let Some((key, value)) = setting.split_once('=') {
                let on = value.trim() == "true";
                match key.trim() {
                    "multi_memory" => config.multi_memory = on,
                    "hogs_memory" => config.hogs_memory = on,
                    _ => {}
                }
            }
            config.settings.push(setting.to_owned());
        }
        config
    }

    /// The `NOTE` line of the report, when the configuration changes how the script runs
    /// (every other feature is on in the reference engine for every script).
    fn note(&self) -> Option<String> {
        let mut done = Vec::new();
        if self.multi_memory {
            done.push("lowered with `--multi-memory` under both ABIs");
        }
        if self.hogs_memory {
            done.push("grows memories by GiBs: run on wasmtime only, where growth reserves address space");
        }
        (!done.is_empty()).then(|| format!("`{}`: {}", self.settings.join("`, `"), done.join("; ")))
    }
}

/// Whether `name` is one of the scripts [`SCRIPTS_VARIABLE`] asks for (all when unset).
fn selected(name: &str) -> bool {
    match std::env::var(SCRIPTS_VARIABLE) {
        Ok(words) if !words.trim().is_empty() => {
            words.split(',').map(str::trim).any(|word| !word.is_empty() && name.contains(word))
        }
        _ => true,
    }
}

/// The peak resident size of this process in bytes (`VmHWM`), where the system says.
fn peak_resident() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix("VmHWM:"))?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

impl Abi {
    fn name(self) -> &'static str {
        match self {
            Abi::Canonical => "canonical",
            Abi::Karmem => "karmem",
        }
    }
    fn index(self) -> usize {
        match self {
            Abi::Canonical => 0,
            Abi::Karmem => 1,
        }
    }
    /// The options a script's components are lowered with: `multi_memory` when the script
    /// is written for a multi-memory engine ([`ScriptConfig::multi_memory`]).
    fn lower_options(self, multi_memory: bool) -> karmem_bridge::LowerOptions {
        let abi = match self {
            Abi::Canonical => karmem_bridge::lower::Abi::Canonical,
            Abi::Karmem => karmem_bridge::lower::Abi::Karmem,
        };
        karmem_bridge::LowerOptions { abi, multi_memory, ..karmem_bridge::LowerOptions::default() }
    }
}

/// One check's verdict on one ABI.
#[derive(Debug, Clone)]
enum Verdict {
    Pass,
    Fail(String),
    /// Not counted: why.
    Out(String),
}

/// One directive of a script, checked on each ABI.
#[derive(Debug)]
struct Check {
    line: usize,
    verdicts: [Verdict; 2],
}

/// What a script gave.
#[derive(Debug, Default)]
struct ScriptReport {
    checks: Vec<Check>,
    /// Where the reference disagrees with the script's own asserts.
    reference_problems: Vec<(usize, String)>,
    /// A whole script not run, and why.
    skipped: Option<String>,
    /// Panics: a failure of the test.
    panics: Vec<String>,
    /// The engine the script is written for.
    config: ScriptConfig,
}

#[test]
fn wasmtime_component_wast_scripts() {
    let Some(suite) = suite_dir() else { return };
    let mut scripts = Vec::new();
    collect_scripts(&suite, &mut scripts);
    scripts.sort();
    assert!(!scripts.is_empty(), "`{}` holds no `.wast` script", suite.display());
    let every_script = scripts.len();
    scripts.retain(|path| selected(&path.strip_prefix(&suite).unwrap_or(path).display().to_string()));
    let filtered = scripts.len() < every_script;
    assert!(!scripts.is_empty(), "{SCRIPTS_VARIABLE} selects none of the scripts in `{}`", suite.display());

    let started = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let reports = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..std::thread::available_parallelism().map_or(2, usize::from) {
            std::thread::Builder::new()
                // Debug builds of the lowering and of cranelift recurse with big frames.
                .stack_size(64 << 20)
                .spawn_scoped(scope, || {
                    while let Some(path) = scripts.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let name = path.strip_prefix(&suite).unwrap_or(path).display().to_string();
                        let report = run_script_guarded(&name, path);
                        reports.lock().expect("no worker panics").push((name, report));
                    }
                })
                .expect("spawning a worker thread");
        }
    });
    let mut reports = reports.into_inner().expect("no worker panics");
    reports.sort_by(|a, b| a.0.cmp(&b.0));

    // The report.
    let mut problems = Vec::new();
    let peak = peak_resident();
    println!(
        "conformance wast: {} scripts from `{}` in {:.1?}, peak resident {}",
        reports.len(),
        suite.display(),
        started.elapsed(),
        peak.map_or_else(|| "unknown".to_owned(), |bytes| format!("{} MiB", bytes >> 20))
    );
    if let Some(bytes) = peak
        && bytes > PEAK_RESIDENT_LIMIT
    {
        problems.push(format!(
            "peak resident {} MiB, above the limit of {} MiB: memory growth no longer stays virtual",
            bytes >> 20,
            PEAK_RESIDENT_LIMIT >> 20
        ));
    }
    if filtered {
        println!("conformance wast: {SCRIPTS_VARIABLE} selects {} of {every_script} scripts; no floors", reports.len());
    }
    for abi in ABIS {
        let mut passed = 0;
        let mut failed = Vec::new();
        for (name, report) in &reports {
            for check in &report.checks {
                match &check.verdicts[abi.index()] {
                    Verdict::Pass => passed += 1,
                    Verdict::Fail(why) => failed.push(format!("{name}:{}: {why}", check.line)),
                    Verdict::Out(_) => {}
                }
            }
        }
        println!("conformance wast --abi {}: {passed} passed, {} failed", abi.name(), failed.len());
        for line in &failed {
            println!("  FAIL {line}");
        }
        let floor = FLOORS.iter().find(|(a, _)| *a == abi).map_or(0, |(_, floor)| *floor);
        if passed < floor && !filtered {
            problems.push(format!("--abi {}: {passed} passed, below the floor of {floor}", abi.name()));
        }
    }
    for (name, report) in &reports {
        if let Some(note) = report.config.note() {
            println!("  NOTE {name}: {note}");
        }
    }
    println!("conformance wast: out of scope (not counted)");
    for (name, report) in &reports {
        if let Some(why) = &report.skipped {
            println!("  OUT {name}: {why}");
        }
        // Consecutive checks out of scope for the same reason on both ABIs show once.
        let mut last: Option<String> = None;
        let mut count = 0;
        let mut first_line = 0;
        let flush = |last: &Option<String>, count: usize, first_line: usize| {
            if let Some(why) = last {
                let checks = if count == 1 { "1 check".to_owned() } else { format!("{count} checks") };
                println!("  OUT {name}:{first_line} ({checks}): {why}");
            }
        };
        for check in &report.checks {
            let why = match (&check.verdicts[0], &check.verdicts[1]) {
                (Verdict::Out(a), Verdict::Out(b)) if a == b => Some(a.clone()),
                (Verdict::Out(a), Verdict::Out(b)) => Some(format!("canonical: {a}; karmem: {b}")),
                (Verdict::Out(a), _) => Some(format!("canonical only: {a}")),
                (_, Verdict::Out(b)) => Some(format!("karmem only: {b}")),
                _ => None,
            };
            if why.is_some() && why == last {
                count += 1;
                continue;
            }
            flush(&last, count, first_line);
            last = why;
            count = 1;
            first_line = check.line;
        }
        flush(&last, count, first_line);
    }
    let disagreements: Vec<String> = reports
        .iter()
        .flat_map(|(name, r)| r.reference_problems.iter().map(move |(line, why)| format!("{name}:{line}: {why}")))
        .collect();
    println!("conformance wast: the reference disagrees with the script {} times", disagreements.len());
    for line in &disagreements {
        println!("  REFERENCE {line}");
    }
    for (name, report) in &reports {
        for panic in &report.panics {
            problems.push(format!("{name}: panicked: {panic}"));
        }
    }
    assert!(problems.is_empty(), "conformance wast:\n{}", problems.join("\n"));
}

/// The suite's directory, or `None` (after saying why) when it is absent.
fn suite_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("KARMEM_CONFORMANCE_DIR") {
        let suite = PathBuf::from(dir).join("wasmtime-wast");
        assert!(suite.is_dir(), "KARMEM_CONFORMANCE_DIR is set but `{}` is not a directory", suite.display());
        return Some(suite);
    }
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/wasmtime-wast");
    if suite.is_dir() {
        return Some(suite);
    }
    println!(
        "conformance wast: skipped, `{}` does not exist (CI has the conformance material at \
         `../shared/conformance` from the project root; KARMEM_CONFORMANCE_DIR names another)",
        suite.display()
    );
    None
}

fn collect_scripts(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading `{}`: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_scripts(&path, out);
        } else if path.extension().is_some_and(|e| e == "wast") {
            out.push(path);
        }
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

fn run_script_guarded(name: &str, path: &Path) -> ScriptReport {
    if name.starts_with("async/") || name.starts_with("async\\") {
        return ScriptReport {
            skipped: Some("the whole script: component-model async (its own issue)".to_owned()),
            ..ScriptReport::default()
        };
    }
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading `{}`: {e}", path.display()));
    let mut report = ScriptReport { config: ScriptConfig::of(&text), ..ScriptReport::default() };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_script(&text, &mut report)));
    if let Err(payload) = outcome {
        report.panics.push(panic_message(payload.as_ref()));
    }
    report
}

/// The reference engine: every feature the scripts' `;;!` lines may ask for.
fn reference_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .wasm_multi_memory(true)
            .wasm_memory64(true)
            .wasm_component_model_memory64(true)
            .wasm_reference_types(true)
            .wasm_function_references(true)
            .wasm_gc(true)
            .wasm_component_model_gc(true)
            .wasm_exceptions(true)
            .wasm_component_model_fixed_length_lists(true)
            .wasm_component_model_async(true)
            .wasm_component_model_more_async_builtins(true)
            .wasm_component_model_async_stackful(true)
            .wasm_component_model_error_context(true);
        Engine::new(&config).expect("the reference engine")
    })
}

/// Whether a component needs component-model async (or its error-context) to validate.
fn needs_async(bytes: &[u8]) -> bool {
    use wasmparser::WasmFeatures as F;
    let all = F::all();
    let without = all
        - (F::CM_ASYNC | F::CM_ASYNC_STACKFUL | F::CM_MORE_ASYNC_BUILTINS | F::CM_THREADING | F::CM_ERROR_CONTEXT);
    wasmparser::Validator::new_with_features(all).validate_all(bytes).is_ok()
        && wasmparser::Validator::new_with_features(without).validate_all(bytes).is_err()
}

/// The outcome of a call.
#[derive(Debug, Clone)]
enum Outcome {
    Returned(Vec<Value>),
    Trapped(String),
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Returned(values) => {
            let shown: Vec<String> = values.iter().map(|v| karmem_tests::harness::abbreviate(&v.to_wave())).collect();
            format!("returned `{}`", shown.join(", "))
        }
        Outcome::Trapped(why) => format!("trapped ({})", first_line(why)),
    }
}

/// An error's chain on one line, each cause without its wasm backtrace.
fn error_text(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = first_line(&cause.to_string());
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// The message of an error or trap on one line: wasm backtraces dropped.
fn first_line(text: &str) -> String {
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with(|c: char| c.is_ascii_digit())
                && !line.starts_with("note:")
                && !line.starts_with("Stack backtrace")
                && !line.starts_with("Caused by:")
                && !line.starts_with("at ")
        })
        .map(|line| line.trim_end_matches("error while executing at wasm backtrace:").trim())
        .filter(|line| !line.is_empty())
        .collect();
    let joined = kept.join(" ");
    let line = joined.as_str();
    if line.len() > 300 { format!("{}...", line.chars().take(300).collect::<String>()) } else { line.to_owned() }
}

fn same(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equivalent(y))
}

/// A component defined by the script, lowered once per ABI.
struct Definition {
    bytes: Vec<u8>,
    /// Out of scope on every ABI, and why.
    out: Option<String>,
    /// Per ABI: the lowered module, or the refusal.
    lowered: [Result<Vec<u8>, String>; 2],
}

fn define(bytes: Vec<u8>, multi_memory: bool) -> Result<Definition, String> {
    let component = Component::new(reference_engine(), &bytes).map_err(|e| format!("{e:#}"))?;
    drop(component);
    let out = needs_async(&bytes).then(|| "component-model async (its own issue)".to_owned());
    let lower = |abi: Abi| -> Result<Vec<u8>, String> {
        if out.is_some() {
            return Err(String::new());
        }
        let refused = |e: anyhow::Error| format!("lowering refuses it: {}", first_line(&format!("{e:#}")));
        match karmem_bridge::lower(&bytes, &abi.lower_options(multi_memory)) {
            Ok(lowered) => Ok(lowered.module),
            // Memories that cannot share one at the canonical boundary: the documented remedy
            // is `--multi-memory`, which the canonical host handles.
            Err(e) if abi == Abi::Canonical && format!("{e:#}").contains("in one memory") => {
                let options = karmem_bridge::LowerOptions { multi_memory: true, ..abi.lower_options(false) };
                karmem_bridge::lower(&bytes, &options).map(|lowered| lowered.module).map_err(refused)
            }
            Err(e) => Err(refused(e)),
        }
    };
    let lowered = [lower(Abi::Canonical), lower(Abi::Karmem)];
    Ok(Definition { bytes, out, lowered })
}

/// A lowered module being run.
trait Candidate {
    fn call(&mut self, name: &str, args: &[Val], ty: &ComponentFunc) -> Outcome;
}

/// A lowered instance, or why there is none.
enum Lowered {
    Ready(Box<dyn Candidate>),
    /// Not counted.
    Out(String),
    /// Every check on it fails.
    Broken(String),
}

/// The reference instance, in a store of its own (a trap poisons its store).
struct Reference {
    store: Store<()>,
    instance: wasmtime::component::Instance,
}

/// One instantiated component of a script.
struct Live {
    reference: Option<Reference>,
    lowered: [Lowered; 2],
}

struct ScriptState<'r> {
    /// Lower with `--multi-memory` under both ABIs ([`ScriptConfig::multi_memory`]).
    multi_memory: bool,
    text: String,
    report: &'r mut ScriptReport,
    linker: Linker<()>,
    definitions: HashMap<String, Arc<Definition>>,
    last_definition: Option<Arc<Definition>>,
    named: HashMap<String, usize>,
    live: Vec<Live>,
    current: Option<usize>,
}

fn run_script(text: &str, report: &mut ScriptReport) {
    let buffer = match ParseBuffer::new(text) {
        Ok(buffer) => buffer,
        Err(e) => {
            report.skipped = Some(format!("the wast crate cannot lex it: {e}"));
            return;
        }
    };
    let wast = match parser::parse::<Wast>(&buffer) {
        Ok(wast) => wast,
        Err(e) => {
            report.skipped = Some(format!("the wast crate cannot parse it: {}", first_line(&e.to_string())));
            return;
        }
    };
    let engine = reference_engine();
    let mut linker = Linker::new(engine);
    spectest::define(&mut linker, engine).expect("defining the spectest host");
    let multi_memory = report.config.multi_memory;
    let mut state = ScriptState {
        multi_memory,
        text: text.to_owned(),
        report,
        linker,
        definitions: HashMap::new(),
        last_definition: None,
        named: HashMap::new(),
        live: Vec::new(),
        current: None,
    };
    for directive in wast.directives {
        state.directive(directive);
    }
}

fn all(verdict: &Verdict) -> [Verdict; 2] {
    [verdict.clone(), verdict.clone()]
}

impl ScriptState<'_> {
    fn line(&self, span: wast::token::Span) -> usize {
        span.linecol_in(&self.text).0 + 1
    }

    fn push(&mut self, line: usize, verdicts: [Verdict; 2]) {
        self.report.checks.push(Check { line, verdicts });
    }

    fn reference_problem(&mut self, line: usize, why: String) {
        self.report.reference_problems.push((line, why));
    }

    fn directive(&mut self, directive: WastDirective<'_>) {
        match directive {
            WastDirective::Module(mut quote) => {
                let line = self.line(quote.span());
                let id = quote.name().map(|id| id.name().to_owned());
                if !is_component(&quote) {
                    self.push(line, all(&Verdict::Out("a core module directive".to_owned())));
                    return;
                }
                let Some(definition) = self.definition_of(line, &mut quote) else { return };
                self.instantiate(line, definition, id, false);
            }
            WastDirective::ModuleDefinition(mut quote) => {
                let line = self.line(quote.span());
                if !is_component(&quote) {
                    return;
                }
                let id = quote.name().map(|id| id.name().to_owned());
                if let Some(definition) = self.definition_of(line, &mut quote) {
                    if let Some(id) = id {
                        self.definitions.insert(id, Arc::clone(&definition));
                    }
                    self.last_definition = Some(definition);
                }
            }
            WastDirective::ModuleInstance { span, instance, module } => {
                let line = self.line(span);
                let definition = match module {
                    Some(id) => self.definitions.get(id.name()).cloned(),
                    None => self.last_definition.clone(),
                };
                let Some(definition) = definition else {
                    self.push(line, all(&Verdict::Out("instantiates a core module definition".to_owned())));
                    return;
                };
                self.instantiate(line, definition, instance.map(|id| id.name().to_owned()), false);
            }
            WastDirective::Invoke(invoke) => {
                let line = self.line(invoke.span);
                self.invoke_check(line, &invoke, Expect::Success);
            }
            WastDirective::AssertReturn { span, exec, results } => {
                let line = self.line(span);
                match exec {
                    WastExecute::Invoke(invoke) => {
                        let expected: Option<Vec<Value>> = results
                            .iter()
                            .map(|r| match r {
                                WastRet::Component(v) => Some(value_of(v)),
                                _ => None,
                            })
                            .collect();
                        match expected {
                            Some(expected) => self.invoke_check(line, &invoke, Expect::Values(expected)),
                            None => self.push(line, all(&Verdict::Out("core-wasm results".to_owned()))),
                        }
                    }
                    _ => self.push(line, all(&Verdict::Out("assert_return on a non-invoke".to_owned()))),
                }
            }
            WastDirective::AssertTrap { span, exec, message } => {
                let line = self.line(span);
                match exec {
                    WastExecute::Invoke(invoke) => {
                        self.invoke_check(line, &invoke, Expect::Trap(message.to_owned()))
                    }
                    WastExecute::Wat(mut wat) => {
                        if !matches!(wat, Wat::Component(_)) {
                            self.push(line, all(&Verdict::Out("a core module directive".to_owned())));
                            return;
                        }
                        match wat.encode() {
                            Ok(bytes) => match define(bytes, self.multi_memory) {
                                Ok(definition) => {
                                    self.instantiate(line, Arc::new(definition), None, true);
                                }
                                Err(why) => {
                                    self.reference_problem(line, format!("does not compile: {why}"));
                                    self.push(line, all(&Verdict::Out("the reference cannot compile it".to_owned())));
                                }
                            },
                            Err(e) => self.reference_problem(line, format!("does not encode: {e}")),
                        }
                    }
                    WastExecute::Get { .. } => self.push(line, all(&Verdict::Out("a core global".to_owned()))),
                }
            }
            WastDirective::AssertInvalid { span, mut module, message }
            | WastDirective::AssertMalformed { span, mut module, message } => {
                let line = self.line(span);
                if !is_component(&module) {
                    self.push(line, all(&Verdict::Out("a core module directive".to_owned())));
                    return;
                }
                let Ok(bytes) = module.encode() else {
                    // Rejected by the text parser: nothing to lower.
                    return;
                };
                if Component::new(reference_engine(), &bytes).is_ok() {
                    self.reference_problem(line, format!("compiles a component the script says is invalid ({message})"));
                }
                let mut verdicts = all(&Verdict::Pass);
                for abi in ABIS {
                    if karmem_bridge::lower(&bytes, &abi.lower_options(self.multi_memory)).is_ok() {
                        verdicts[abi.index()] =
                            Verdict::Fail(format!("lowering accepts a component the script says is invalid ({message})"));
                    }
                }
                self.push(line, verdicts);
            }
            WastDirective::AssertUnlinkable { span, .. } => {
                let line = self.line(span);
                self.push(
                    line,
                    all(&Verdict::Out(
                        "assert_unlinkable: linking against the host is the embedder's, not the lowering's".to_owned(),
                    )),
                );
            }
            other => {
                let line = self.line(other.span());
                self.push(line, all(&Verdict::Out("a core-wasm directive".to_owned())));
            }
        }
    }

    /// Encodes and defines a component; `None` (after recording why) when the reference
    /// cannot compile it.
    fn definition_of(&mut self, line: usize, quote: &mut QuoteWat<'_>) -> Option<Arc<Definition>> {
        let bytes = match quote.encode() {
            Ok(bytes) => bytes,
            Err(e) => {
                self.reference_problem(line, format!("does not encode: {}", first_line(&e.to_string())));
                return None;
            }
        };
        match define(bytes, self.multi_memory) {
            Ok(definition) => Some(Arc::new(definition)),
            Err(why) => {
                self.reference_problem(line, format!("the reference cannot compile it: {}", first_line(&why)));
                self.push(line, all(&Verdict::Out("the reference cannot compile it".to_owned())));
                None
            }
        }
    }

    /// Instantiates `definition` on the reference and on each ABI; `expect_trap` for
    /// `assert_trap` on a component.
    fn instantiate(&mut self, line: usize, definition: Arc<Definition>, id: Option<String>, expect_trap: bool) {
        let component = Component::new(reference_engine(), &definition.bytes).expect("compiled once already");
        let mut store = Store::new(reference_engine(), ());
        let reference = match self.linker.instantiate(&mut store, &component) {
            Ok(instance) => {
                if expect_trap {
                    self.reference_problem(line, "instantiates; the script expects a trap".to_owned());
                }
                Some(Reference { store, instance })
            }
            Err(e) => {
                if !expect_trap {
                    self.reference_problem(line, format!("does not instantiate: {}", first_line(&format!("{e:#}"))));
                }
                None
            }
        };
        let mut verdicts = all(&Verdict::Pass);
        let mut lowered: [Lowered; 2] = [Lowered::Out(String::new()), Lowered::Out(String::new())];
        for abi in ABIS {
            let (candidate, verdict) = match (&definition.out, &definition.lowered[abi.index()]) {
                (Some(why), _) => (Lowered::Out(why.clone()), Verdict::Out(why.clone())),
                (None, Err(why)) => (Lowered::Out(why.clone()), Verdict::Out(why.clone())),
                (None, Ok(module)) => match start(abi, &definition.bytes, module) {
                    Ok(candidate) if expect_trap => (
                        Lowered::Ready(candidate),
                        Verdict::Fail("the lowered module instantiates; the script expects a trap".to_owned()),
                    ),
                    Ok(candidate) => (Lowered::Ready(candidate), Verdict::Pass),
                    Err(_) if expect_trap => (Lowered::Broken("it trapped at instantiation".to_owned()), Verdict::Pass),
                    Err(why) => {
                        let why = format!("the lowered module does not instantiate: {}", first_line(&why));
                        (Lowered::Broken(why.clone()), Verdict::Fail(why))
                    }
                },
            };
            lowered[abi.index()] = candidate;
            verdicts[abi.index()] = verdict;
        }
        self.push(line, verdicts);
        if expect_trap {
            return;
        }
        let index = self.live.len();
        self.live.push(Live { reference, lowered });
        if let Some(id) = id {
            self.named.insert(id, index);
        }
        self.current = Some(index);
    }

    fn invoke_check(&mut self, line: usize, invoke: &WastInvoke<'_>, expect: Expect) {
        let target = match invoke.module {
            Some(id) => self.named.get(id.name()).copied(),
            None => self.current,
        };
        let Some(target) = target else {
            self.reference_problem(line, "invokes with no component instance".to_owned());
            return;
        };
        let args: Option<Vec<Val>> = invoke
            .args
            .iter()
            .map(|a| match a {
                WastArg::Component(v) => Some(val_of(v)),
                _ => None,
            })
            .collect();
        let Some(args) = args else {
            self.push(line, all(&Verdict::Out("core-wasm arguments".to_owned())));
            return;
        };
        let live = &mut self.live[target];
        // The reference.
        let Some(reference) = &mut live.reference else {
            self.push(line, all(&Verdict::Out("the reference did not instantiate the component".to_owned())));
            return;
        };
        let Some(func) = reference.instance.get_func(&mut reference.store, invoke.name) else {
            self.report.reference_problems.push((line, format!("no export `{}`", invoke.name)));
            return;
        };
        let ty = func.ty(&reference.store);
        let mut results = vec![Val::Bool(false); ty.results().len()];
        let reference_outcome = match func.call(&mut reference.store, &args, &mut results) {
            Ok(()) => Outcome::Returned(results.iter().map(plain_value).collect()),
            Err(e) => Outcome::Trapped(error_text(&anyhow::Error::from(e))),
        };
        let agrees = match (&expect, &reference_outcome) {
            (Expect::Success, Outcome::Returned(_)) => None,
            (Expect::Values(expected), Outcome::Returned(actual)) if same(expected, actual) => None,
            (Expect::Values(expected), _) => Some(format!(
                "{} where the script expects `{}`",
                describe(&reference_outcome),
                expected.iter().map(Value::to_wave).collect::<Vec<_>>().join(", ")
            )),
            (Expect::Trap(message), Outcome::Trapped(why)) if why.contains(message.as_str()) => None,
            (Expect::Trap(message), _) => {
                Some(format!("{} where the script expects a trap `{message}`", describe(&reference_outcome)))
            }
            (Expect::Success, Outcome::Trapped(_)) => {
                Some(format!("{} where the script expects a return", describe(&reference_outcome)))
            }
        };
        if let Some(why) = agrees {
            self.report.reference_problems.push((line, format!("`{}`: {why}", invoke.name)));
        }
        // The lowered modules.
        let mut verdicts = all(&Verdict::Pass);
        for abi in ABIS {
            verdicts[abi.index()] = match &mut live.lowered[abi.index()] {
                Lowered::Out(why) => Verdict::Out(why.clone()),
                Lowered::Broken(why) => Verdict::Fail(why.clone()),
                Lowered::Ready(candidate) => {
                    let outcome = candidate.call(invoke.name, &args, &ty);
                    judge(&expect, &reference_outcome, &outcome, invoke.name)
                }
            };
        }
        self.push(line, verdicts);
    }
}

/// What the script expects of an invoke.
enum Expect {
    /// `invoke`: returns (what the reference returns).
    Success,
    Values(Vec<Value>),
    Trap(String),
}

fn judge(expect: &Expect, reference: &Outcome, outcome: &Outcome, name: &str) -> Verdict {
    if let Outcome::Trapped(why) = outcome
        && let Some(unserved) = why.find("does not provide")
    {
        return Verdict::Fail(format!("`{name}`: the runner serves no such import: {}", first_line(&why[unserved..])));
    }
    match (expect, outcome) {
        (Expect::Trap(_), Outcome::Trapped(_)) => Verdict::Pass,
        (Expect::Trap(message), Outcome::Returned(_)) => {
            Verdict::Fail(format!("`{name}` {}; the script expects a trap `{message}`", describe(outcome)))
        }
        (Expect::Values(expected), Outcome::Returned(actual)) if same(expected, actual) => Verdict::Pass,
        (Expect::Values(expected), _) => Verdict::Fail(format!(
            "`{name}` {}; the script expects `{}`",
            describe(outcome),
            expected.iter().map(Value::to_wave).collect::<Vec<_>>().join(", ")
        )),
        (Expect::Success, Outcome::Returned(actual)) => match reference {
            Outcome::Returned(wanted) if !same(wanted, actual) => {
                Verdict::Fail(format!("`{name}` {}; the reference {}", describe(outcome), describe(reference)))
            }
            _ => Verdict::Pass,
        },
        (Expect::Success, Outcome::Trapped(_)) => {
            Verdict::Fail(format!("`{name}` {}; the script expects a return", describe(outcome)))
        }
    }
}

fn is_component(quote: &QuoteWat<'_>) -> bool {
    matches!(quote, QuoteWat::Wat(Wat::Component(_)) | QuoteWat::QuoteComponent(..))
}

/// A wasmtime value as the harness's value (handles shown as `handle`).
fn plain_value(val: &Val) -> Value {
    karmem_tests::reference::value_from_val(val, &mut |_| "handle".to_owned())
}

/// A wast value as an argument for wasmtime.
fn val_of(v: &WastVal<'_>) -> Val {
    let boxed = |v: &Option<Box<WastVal<'_>>>| v.as_ref().map(|v| Box::new(val_of(v)));
    match v {
        WastVal::Bool(b) => Val::Bool(*b),
        WastVal::U8(n) => Val::U8(*n),
        WastVal::S8(n) => Val::S8(*n),
        WastVal::U16(n) => Val::U16(*n),
        WastVal::S16(n) => Val::S16(*n),
        WastVal::U32(n) => Val::U32(*n),
        WastVal::S32(n) => Val::S32(*n),
        WastVal::U64(n) => Val::U64(*n),
        WastVal::S64(n) => Val::S64(*n),
        WastVal::F32(x) => Val::Float32(f32::from_bits(x.bits)),
        WastVal::F64(x) => Val::Float64(f64::from_bits(x.bits)),
        WastVal::Char(c) => Val::Char(*c),
        WastVal::String(s) => Val::String((*s).to_owned()),
        WastVal::List(items) => Val::List(items.iter().map(val_of).collect()),
        WastVal::Record(fields) => Val::Record(fields.iter().map(|(n, v)| ((*n).to_owned(), val_of(v))).collect()),
        WastVal::Tuple(items) => Val::Tuple(items.iter().map(val_of).collect()),
        WastVal::Variant(case, payload) => Val::Variant((*case).to_owned(), boxed(payload)),
        WastVal::Enum(case) => Val::Enum((*case).to_owned()),
        WastVal::Option(inner) => Val::Option(boxed(inner)),
        WastVal::Result(Ok(inner)) => Val::Result(Ok(boxed(inner))),
        WastVal::Result(Err(inner)) => Val::Result(Err(boxed(inner))),
        WastVal::Flags(names) => Val::Flags(names.iter().map(|n| (*n).to_owned()).collect()),
    }
}

/// A wast value as the harness's value (for expected results).
fn value_of(v: &WastVal<'_>) -> Value {
    plain_value(&val_of(v))
}

/// Instantiates a lowered module for `abi`.
fn start(abi: Abi, component: &[u8], lowered: &[u8]) -> Result<Box<dyn Candidate>, String> {
    match abi {
        Abi::Canonical => CanonicalRunner::with_typing_engine(reference_engine(), component, lowered)
            .map(|runner| Box::new(CanonicalCandidate { runner }) as Box<dyn Candidate>)
            .map_err(|e| error_text(&e)),
        Abi::Karmem => {
            let options = karmem_runtime::invoke::SessionOptions {
                timeout: Some(std::time::Duration::from_secs(20)),
                hosts: spectest::karmem_hosts(),
                ..karmem_runtime::invoke::SessionOptions::default()
            };
            karmem_runtime::invoke::Session::new(karmem_runtime(), lowered, &options)
                .map(|session| Box::new(KarmemCandidate { session }) as Box<dyn Candidate>)
                .map_err(|e| error_text(&e))
        }
    }
}

fn karmem_runtime() -> &'static karmem_runtime::Runtime {
    static RUNTIME: OnceLock<karmem_runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        karmem_runtime::Runtime::new(karmem_runtime::RuntimeConfig::default()).expect("a karmem runtime")
    })
}

/// The canonical-ABI module, called through `karmem_tests::canonical_host`.
struct CanonicalCandidate {
    runner: CanonicalRunner,
}

impl Candidate for CanonicalCandidate {
    fn call(&mut self, name: &str, args: &[Val], _ty: &ComponentFunc) -> Outcome {
        let mut waves = Vec::new();
        for arg in args {
            match arg.to_wave() {
                Ok(text) => waves.push(Arg::Wave(text)),
                Err(e) => return Outcome::Trapped(format!("the runner cannot write an argument as WAVE: {e}")),
            }
        }
        let invocation = Invocation {
            line: 0,
            text: name.to_owned(),
            action: Action::Call(Call { bind: None, interface: None, function: name.to_owned(), args: waves }),
        };
        match self.runner.invoke(&invocation) {
            Ok(outcome) => match outcome.completion {
                Completion::Returned(values) => Outcome::Returned(values),
                Completion::Trapped(why) => Outcome::Trapped(why),
                Completion::Exited(code) => Outcome::Trapped(format!("exited with {code}")),
            },
            // The host's lifting refused what the module gave it: a trap at the boundary.
            Err(e) => Outcome::Trapped(format!("the canonical host: {e:#}")),
        }
    }
}

/// The Karmem-ABI module, called through its edge with WAVE values.
struct KarmemCandidate {
    session: karmem_runtime::invoke::Session,
}

impl Candidate for KarmemCandidate {
    fn call(&mut self, name: &str, args: &[Val], ty: &ComponentFunc) -> Outcome {
        match self.try_call(name, args, ty) {
            Ok(outcome) => outcome,
            Err(why) => Outcome::Trapped(why),
        }
    }
}

impl KarmemCandidate {
    fn try_call(&mut self, name: &str, args: &[Val], ty: &ComponentFunc) -> Result<Outcome, String> {
        let (interface, function) = self.session.resolve_function(name).map_err(|e| format!("runner: {e:#}"))?;
        let abi = self.session.abi().ok_or("runner: the module has no Karmem ABI")?;
        let mut waves = Vec::new();
        for arg in args {
            waves.push(arg.to_wave().map_err(|e| format!("runner: an argument as WAVE: {e}"))?);
        }
        let text = format!("{}({})", karmem_format::wave::kebab(&function), waves.join(", "));
        let parsed = karmem_format::wave::parse_invocation(&abi.layout, &interface, &text)
            .map_err(|e| format!("runner: the Karmem edge does not take `{text}`: {e}"))?;
        let results = match self.session.invoke(&interface, &parsed.function, &parsed.args) {
            Ok(results) => results,
            Err(e) => return Ok(Outcome::Trapped(error_text(&e))),
        };
        let printed = karmem_format::wave::print_results(&results).map_err(|e| format!("runner: results as WAVE: {e}"))?;
        let types: Vec<Type> = ty.results().collect();
        match types.as_slice() {
            [] if printed.trim().is_empty() => Ok(Outcome::Returned(Vec::new())),
            [] => Err(format!("returned `{printed}` from a function without results")),
            [single] => {
                let val = Val::from_wave(single, &printed)
                    .map_err(|e| format!("the result `{printed}` is not a value of the result type: {e}"))?;
                Ok(Outcome::Returned(vec![plain_value(&val)]))
            }
            _ => Err("more than one result".to_owned()),
        }
    }
}

/// The host items wasmtime's wast runner gives component scripts (its `crates/wast`,
/// `link_component_spectest`): `host-return-two`, and an instance `host` with functions,
/// a nested instance, a core module and two resource types. The asynchronous ones are left
/// out: only async scripts use them.
mod spectest {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use wasmtime::component::{Linker, Resource, ResourceType};
    use wasmtime::{Engine, Module};

    struct Resource1;
    struct Resource2;

    #[derive(Default)]
    struct Drops {
        count: AtomicU32,
        last: AtomicU32,
    }

    pub fn define(linker: &mut Linker<()>, engine: &Engine) -> wasmtime::Result<()> {
        linker.root().func_wrap("host-return-two", |_, (): ()| Ok((2u32,)))?;
        let mut host = linker.instance("host")?;
        host.func_wrap("return-three", |_, (): ()| Ok((3u32,)))?;
        host.instance("nested")?.func_wrap("return-four", |_, (): ()| Ok((4u32,)))?;
        let module = Module::new(
            engine,
            r#"(module (global (export "g") i32 i32.const 100) (func (export "f") (result i32) i32.const 101))"#,
        )?;
        host.module("simple-module", &module)?;
        let drops = Arc::new(Drops::default());
        let seen = Arc::clone(&drops);
        host.resource("resource1", ResourceType::host::<Resource1>(), move |_, rep| {
            seen.count.fetch_add(1, Ordering::SeqCst);
            seen.last.store(rep, Ordering::SeqCst);
            Ok(())
        })?;
        host.resource("resource2", ResourceType::host::<Resource2>(), |_, _| Ok(()))?;
        host.resource("resource1-again", ResourceType::host::<Resource1>(), |_, _| {
            Err(wasmtime::Error::msg("`resource1-again` is never dropped"))
        })?;
        host.func_wrap("[constructor]resource1", |_, (rep,): (u32,)| Ok((Resource::<Resource1>::new_own(rep),)))?;
        host.func_wrap("[static]resource1.assert", |_, (r, rep): (Resource<Resource1>, u32)| {
            if r.rep() == rep { Ok(()) } else { Err(wasmtime::Error::msg("resource1.assert: another rep")) }
        })?;
        let seen = Arc::clone(&drops);
        host.func_wrap("[static]resource1.last-drop", move |_, (): ()| Ok((seen.last.load(Ordering::SeqCst),)))?;
        let seen = Arc::clone(&drops);
        host.func_wrap("[static]resource1.drops", move |_, (): ()| Ok((seen.count.load(Ordering::SeqCst),)))?;
        host.func_wrap("[method]resource1.simple", |_, (r, rep): (Resource<Resource1>, u32)| {
            if !r.owned() && r.rep() == rep {
                Ok(())
            } else {
                Err(wasmtime::Error::msg("resource1.simple: not the borrow expected"))
            }
        })?;
        host.func_wrap("[method]resource1.take-borrow", |_, (a, b): (Resource<Resource1>, Resource<Resource1>)| {
            if !a.owned() && !b.owned() { Ok(()) } else { Err(wasmtime::Error::msg("take-borrow: an own")) }
        })?;
        host.func_wrap("[method]resource1.take-own", |_, (a, b): (Resource<Resource1>, Resource<Resource1>)| {
            if !a.owned() && b.owned() { Ok(()) } else { Err(wasmtime::Error::msg("take-own: wrong ownership")) }
        })?;
        host.func_wrap("return-hi", |_, (): ()| Ok(("hi".to_owned(),)))?;
        Ok(())
    }

    /// The same items for a lowered module's Karmem edge (KarmemIDL names, an
    /// argument struct in, a result struct `ret` out). Resource drops of host
    /// resources cannot be served by karmem-runtime's host functions: they trap.
    pub fn karmem_hosts() -> karmem_runtime::invoke::HostFunctions {
        use karmem_format::Value;
        use std::sync::Mutex;

        #[derive(Default)]
        struct Table {
            next: u32,
            reps: std::collections::BTreeMap<u32, u32>,
        }
        let table = Arc::new(Mutex::new(Table::default()));
        let ret = |v: Value| Ok(Value::Record(vec![("ret".to_owned(), v)]));
        let none = || Ok(Value::Record(Vec::new()));
        let u32_field = |args: &Value, name: &str| match args.field(name) {
            Some(Value::U32(n)) => Ok(*n),
            other => Err(anyhow::anyhow!("expected a u32 `{name}`, found {other:?}")),
        };
        let mut hosts = karmem_runtime::invoke::HostFunctions::default();
        hosts.register("host", "return_three", Arc::new(move |_| ret(Value::U32(3))));
        hosts.register("host", "return_hi", Arc::new(move |_| ret(Value::String("hi".to_owned()))));
        let t = Arc::clone(&table);
        hosts.register(
            "host",
            "resource1_new",
            Arc::new(move |args| {
                let rep = u32_field(args, "r")?;
                let mut table = t.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                table.next += 1;
                let handle = table.next;
                table.reps.insert(handle, rep);
                ret(Value::U32(handle))
            }),
        );
        for (function, first) in [("resource1_assert", "r"), ("resource1_simple", "self")] {
            let t = Arc::clone(&table);
            hosts.register(
                "host",
                function,
                Arc::new(move |args| {
                    let (handle, rep) = (u32_field(args, first)?, u32_field(args, "rep")?);
                    let mut table = t.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    match table.reps.get(&handle) {
                        // `assert` takes the handle's ownership: it is gone afterwards.
                        Some(held) if *held == rep && function == "resource1_assert" => {
                            table.reps.remove(&handle);
                            none()
                        }
                        Some(held) if *held == rep => none(),
                        _ => Err(anyhow::anyhow!("resource1 handle {handle} does not hold rep {rep}")),
                    }
                }),
            );
        }
        for function in ["resource1_take_borrow", "resource1_take_own"] {
            hosts.register("host", function, Arc::new(move |_| none()));
        }
        // The drop of an owned `resource1` handle: the host's destructor counts it and keeps
        // its rep, as the reference's does.
        let drops = Arc::new(Mutex::new((0u32, 0u32)));
        let (t, seen) = (Arc::clone(&table), Arc::clone(&drops));
        hosts.register_drop(
            "host",
            "resource1",
            Arc::new(move |handle| {
                let mut table = t.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                let rep = table
                    .reps
                    .remove(&(handle as u32))
                    .ok_or_else(|| anyhow::anyhow!("resource1 handle {handle} is not held"))?;
                let mut seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                *seen = (seen.0 + 1, rep);
                Ok(())
            }),
        );
        for (function, pick) in [("resource1_drops", 0), ("resource1_last_drop", 1)] {
            let seen = Arc::clone(&drops);
            hosts.register(
                "host",
                function,
                Arc::new(move |_| {
                    let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    ret(Value::U32(if pick == 0 { seen.0 } else { seen.1 }))
                }),
            );
        }
        hosts
    }
}
