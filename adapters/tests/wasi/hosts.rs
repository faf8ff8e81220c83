//! Three preview1 hosts for one core module: wasmtime with the component
//! model off (`wasmtime_wasi::p1`), wasmi (`wasmi_wasi`), and node
//! (`scripts/node-wasi-check.mjs`, V8 + `node:wasi`). Each runs `_start` with
//! the same arguments, environment, empty stdin and one preopened directory,
//! and reports what a user could observe. The reference, the original
//! component on wasmtime's component runtime, gets the same configuration.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result, bail};

/// The guest path of the preopened directory.
pub const GUEST_DIR: &str = "/sandbox";

/// What one run showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    /// `None` when the module trapped.
    pub exit_code: Option<i32>,
    /// Every file left in the preopened directory, by relative path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// For reactors: one line per export call, written by the driver.
    pub transcript: Vec<String>,
}

/// How a run enters the module: `_start`, or a reactor driver that calls
/// exports through [`CoreGuest`] and notes each result in the transcript.
#[derive(Clone, Copy)]
pub enum Entry<'a> {
    Start,
    Reactor(&'a CoreDriver),
}

/// A reactor driver: calls exports, notes a transcript line per call, and
/// returns how the last call went.
pub type CoreDriver = dyn Fn(&mut dyn CoreGuest, &mut Vec<String>) -> Result<Step>;

/// What a call into the guest did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Returned, with its (single) result if it has one.
    Returned(Option<i32>),
    /// Ended the run: `Some(code)` through `proc_exit`, `None` by trapping.
    Stopped(Option<i32>),
}

/// A lowered reactor seen through its core exports and memory.
pub trait CoreGuest {
    fn call(&mut self, name: &str, args: &[i32]) -> Result<Step>;
    fn read(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>>;
    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()>;
}

/// The exit code of a reactor run: a stop's code, or 0 when every call returned.
fn exit_code_of(step: Step) -> Option<i32> {
    match step {
        Step::Returned(_) => Some(0),
        Step::Stopped(code) => code,
    }
}

/// The configuration every host gets.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Files the preopened directory holds before the run.
    pub files: Vec<(String, Vec<u8>)>,
}

impl Invocation {
    /// A fresh preopened directory holding `files`.
    fn sandbox(&self) -> Result<tempfile::TempDir> {
        let sandbox = tempfile::tempdir()?;
        for (name, contents) in &self.files {
            std::fs::write(sandbox.path().join(name), contents)?;
        }
        Ok(sandbox)
    }
}

/// The reference's store data.
pub struct ComponentHost {
    ctx: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for ComponentHost {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

/// A reference reactor driver: typed calls on the component instance.
pub type ComponentDriver<'a> = &'a dyn Fn(
    &mut wasmtime::Store<ComponentHost>,
    &wasmtime::component::Instance,
    &mut Vec<String>,
) -> Result<Step>;

/// The reference: the original component on wasmtime's component runtime
/// (`wasmtime_wasi::p2`), run through `wasi:cli/run` (`driver: None`) or
/// driven as a reactor.
pub fn run_component(component: &[u8], invocation: &Invocation, driver: Option<ComponentDriver<'_>>) -> Result<Outcome> {
    use wasmtime::component::{Component, Linker, ResourceTable};
    use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
    use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

    let sandbox = invocation.sandbox()?;
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    let engine = wasmtime::Engine::new(&config).map_err(wasmtime_error)?;
    let component = Component::new(&engine, component).map_err(wasmtime_error)?;
    let mut linker: Linker<ComponentHost> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(wasmtime_error)?;
    let stdout = MemoryOutputPipe::new(1 << 20);
    let stderr = MemoryOutputPipe::new(1 << 20);
    let mut builder = WasiCtxBuilder::new();
    builder.args(&invocation.args).stdout(stdout.clone()).stderr(stderr.clone());
    for (key, value) in &invocation.env {
        builder.env(key, value);
    }
    builder.preopened_dir(sandbox.path(), GUEST_DIR, FsPerms::ReadWrite).map_err(wasmtime_error)?;
    let mut store = wasmtime::Store::new(&engine, ComponentHost { ctx: builder.build(), table: ResourceTable::new() });
    let mut transcript = Vec::new();
    let exit_code = match driver {
        None => {
            let command = wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)
                .map_err(wasmtime_error)?;
            match command.wasi_cli_run().call_run(&mut store) {
                Ok(Ok(())) => Some(0),
                Ok(Err(())) => Some(1),
                Err(error) => stopped(&error),
            }
        }
        Some(driver) => {
            let instance = linker.instantiate(&mut store, &component).map_err(wasmtime_error)?;
            exit_code_of(driver(&mut store, &instance, &mut transcript)?)
        }
    };
    drop(store);
    Ok(Outcome {
        stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
        exit_code,
        files: collect_files(sandbox.path())?,
        transcript,
    })
}

/// How a wasmtime error ended a run: an exit code, or `None` for a trap.
pub fn stopped(error: &wasmtime::Error) -> Option<i32> {
    error.downcast_ref::<wasmtime_wasi::I32Exit>().map(|exit| exit.0)
}

pub fn run_wasmtime(wasm: &[u8], invocation: &Invocation) -> Result<Outcome> {
    run_wasmtime_entry(wasm, invocation, Entry::Start)
}

pub fn run_wasmtime_entry(wasm: &[u8], invocation: &Invocation, entry: Entry<'_>) -> Result<Outcome> {
    use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
    use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

    let sandbox = invocation.sandbox()?;
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::new(&engine, wasm).map_err(wasmtime_error).context("wasmtime rejected the module")?;
    let mut linker: wasmtime::Linker<wasmtime_wasi::p1::WasiP1Ctx> = wasmtime::Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx).map_err(wasmtime_error)?;
    let stdout = MemoryOutputPipe::new(1 << 20);
    let stderr = MemoryOutputPipe::new(1 << 20);
    let mut builder = WasiCtxBuilder::new();
    builder.args(&invocation.args).stdout(stdout.clone()).stderr(stderr.clone());
    for (key, value) in &invocation.env {
        builder.env(key, value);
    }
    builder.preopened_dir(sandbox.path(), GUEST_DIR, FsPerms::ReadWrite).map_err(wasmtime_error)?;
    let mut store = wasmtime::Store::new(&engine, builder.build_p1());
    let instance = linker.instantiate(&mut store, &module).map_err(wasmtime_error)?;
    let mut transcript = Vec::new();
    let exit_code = match entry {
        Entry::Start => {
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start").map_err(wasmtime_error)?;
            match start.call(&mut store, ()) {
                Ok(()) => Some(0),
                Err(error) => stopped(&error),
            }
        }
        Entry::Reactor(driver) => {
            let memory = instance.get_memory(&mut store, "memory").context("no exported `memory`")?;
            let mut guest = WasmtimeGuest { store: &mut store, instance, memory };
            exit_code_of(driver(&mut guest, &mut transcript)?)
        }
    };
    drop(store);
    Ok(Outcome {
        stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
        exit_code,
        files: collect_files(sandbox.path())?,
        transcript,
    })
}

struct WasmtimeGuest<'s> {
    store: &'s mut wasmtime::Store<wasmtime_wasi::p1::WasiP1Ctx>,
    instance: wasmtime::Instance,
    memory: wasmtime::Memory,
}

impl CoreGuest for WasmtimeGuest<'_> {
    fn call(&mut self, name: &str, args: &[i32]) -> Result<Step> {
        let func = self.instance.get_func(&mut *self.store, name).with_context(|| format!("no export `{name}`"))?;
        let params: Vec<wasmtime::Val> = args.iter().map(|arg| wasmtime::Val::I32(*arg)).collect();
        let mut results = vec![wasmtime::Val::I32(0); func.ty(&*self.store).results().len()];
        Ok(match func.call(&mut *self.store, &params, &mut results) {
            Ok(()) => Step::Returned(results.first().and_then(wasmtime::Val::i32)),
            Err(error) => Step::Stopped(stopped(&error)),
        })
    }

    fn read(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>> {
        let end = ptr as usize + len as usize;
        Ok(self.memory.data(&*self.store).get(ptr as usize..end).context("read out of bounds")?.to_vec())
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()> {
        self.memory.write(&mut *self.store, ptr as usize, bytes).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

fn wasmtime_error(error: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("wasmtime: {error:?}")
}

pub fn run_wasmi(wasm: &[u8], invocation: &Invocation) -> Result<Outcome> {
    run_wasmi_entry(wasm, invocation, Entry::Start)
}

pub fn run_wasmi_entry(wasm: &[u8], invocation: &Invocation, entry: Entry<'_>) -> Result<Outcome> {
    use wasmi_wasi::wasi_common::pipe::{ReadPipe, WritePipe};

    let sandbox = invocation.sandbox()?;
    let engine = wasmi::Engine::default();
    let module = wasmi::Module::new(&engine, wasm).map_err(|e| anyhow::anyhow!("wasmi rejected the module: {e}"))?;
    let mut linker = wasmi::Linker::<wasmi_wasi::WasiCtx>::new(&engine);
    wasmi_wasi::add_to_linker(&mut linker, |ctx| ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
    let stdout = Arc::new(RwLock::new(Cursor::new(Vec::new())));
    let stderr = Arc::new(RwLock::new(Cursor::new(Vec::new())));
    let dir = wasmi_wasi::sync::Dir::open_ambient_dir(sandbox.path(), wasmi_wasi::sync::ambient_authority())?;
    let mut builder = wasmi_wasi::WasiCtxBuilder::new();
    builder
        .args(&invocation.args)?
        .stdin(Box::new(ReadPipe::from(Vec::<u8>::new())))
        .stdout(Box::new(WritePipe::from_shared(stdout.clone())))
        .stderr(Box::new(WritePipe::from_shared(stderr.clone())));
    for (key, value) in &invocation.env {
        builder.env(key, value)?;
    }
    builder.preopened_dir(dir, GUEST_DIR)?;
    let mut store = wasmi::Store::new(&engine, builder.build());
    let instance =
        linker.instantiate_and_start(&mut store, &module).map_err(|e| anyhow::anyhow!("wasmi: {e}"))?;
    let mut transcript = Vec::new();
    let exit_code = match entry {
        Entry::Start => {
            let start =
                instance.get_typed_func::<(), ()>(&store, "_start").map_err(|e| anyhow::anyhow!("wasmi: {e}"))?;
            match start.call(&mut store, ()) {
                Ok(()) => Some(0),
                Err(error) => error.i32_exit_status(),
            }
        }
        Entry::Reactor(driver) => {
            let memory = instance.get_memory(&store, "memory").context("no exported `memory`")?;
            let mut guest = WasmiGuest { store: &mut store, instance, memory };
            exit_code_of(driver(&mut guest, &mut transcript)?)
        }
    };
    drop(store);
    let read = |pipe: &Arc<RwLock<Cursor<Vec<u8>>>>| -> Result<String> {
        let guard = pipe.read().map_err(|_| anyhow::anyhow!("a pipe's lock is poisoned"))?;
        Ok(String::from_utf8_lossy(guard.get_ref()).into_owned())
    };
    Ok(Outcome {
        stdout: read(&stdout)?,
        stderr: read(&stderr)?,
        exit_code,
        files: collect_files(sandbox.path())?,
        transcript,
    })
}

struct WasmiGuest<'s> {
    store: &'s mut wasmi::Store<wasmi_wasi::WasiCtx>,
    instance: wasmi::Instance,
    memory: wasmi::Memory,
}

impl CoreGuest for WasmiGuest<'_> {
    fn call(&mut self, name: &str, args: &[i32]) -> Result<Step> {
        let func = self.instance.get_func(&*self.store, name).with_context(|| format!("no export `{name}`"))?;
        let params: Vec<wasmi::Val> = args.iter().map(|arg| wasmi::Val::I32(*arg)).collect();
        let mut results = vec![wasmi::Val::I32(0); func.ty(&*self.store).results().len()];
        Ok(match func.call(&mut *self.store, &params, &mut results) {
            Ok(()) => Step::Returned(results.first().and_then(wasmi::Val::i32)),
            Err(error) => Step::Stopped(error.i32_exit_status()),
        })
    }

    fn read(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>> {
        let end = ptr as usize + len as usize;
        Ok(self.memory.data(&*self.store).get(ptr as usize..end).context("read out of bounds")?.to_vec())
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()> {
        self.memory.write(&mut *self.store, ptr as usize, bytes).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// `None` when `node` is not installed.
pub fn run_node(wasm: &[u8], invocation: &Invocation) -> Result<Option<Outcome>> {
    run_node_entry(wasm, invocation, None)
}

/// With `driver`, a JS module whose `drive(exports, note)` plays the reactor
/// (see `scripts/node-wasi-check.mjs --driver`).
pub fn run_node_entry(wasm: &[u8], invocation: &Invocation, driver: Option<&Path>) -> Result<Option<Outcome>> {
    if Command::new("node").arg("--version").stdout(Stdio::null()).status().is_err() {
        return Ok(None);
    }
    let sandbox = invocation.sandbox()?;
    let scratch = tempfile::tempdir()?;
    let module_path = scratch.path().join("module.wasm");
    std::fs::write(&module_path, wasm)?;
    let mut command = Command::new("node");
    command.arg("--no-warnings").arg(script_path());
    command.arg("--dir").arg(format!("{}::{GUEST_DIR}", sandbox.path().display()));
    for (key, value) in &invocation.env {
        command.arg("--env").arg(format!("{key}={value}"));
    }
    let transcript_path = scratch.path().join("transcript.txt");
    if let Some(driver) = driver {
        command.arg("--driver").arg(driver).arg("--transcript").arg(&transcript_path);
    }
    command.arg(&module_path).args(&invocation.args);
    let output = command.stdin(Stdio::null()).output().context("failed to run node")?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let exit_code = match output.status.code() {
        Some(134) if stderr.contains("trap: ") => None,
        Some(code) => Some(code),
        None => bail!("node was killed by a signal; stderr: {stderr}"),
    };
    Ok(Some(Outcome {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
        exit_code,
        files: collect_files(sandbox.path())?,
        transcript: match driver {
            Some(_) => std::fs::read_to_string(&transcript_path)?.lines().map(String::from).collect(),
            None => Vec::new(),
        },
    }))
}

fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/node-wasi-check.mjs")
}

fn collect_files(root: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let relative = path.strip_prefix(root)?.to_string_lossy().into_owned();
            if entry.file_type()?.is_dir() {
                files.insert(format!("{relative}/"), Vec::new());
                pending.push(path);
            } else {
                files.insert(relative, std::fs::read(&path)?);
            }
        }
    }
    Ok(files)
}

/// The node script's own check mode (`--expect-stdout`, `--expect-exit`):
/// `None` without node, else whether it reported `ok`.
pub fn node_check(wasm: &[u8], invocation: &Invocation, stdout: &Path, exit_code: i32) -> Result<Option<bool>> {
    if Command::new("node").arg("--version").stdout(Stdio::null()).status().is_err() {
        return Ok(None);
    }
    let sandbox = invocation.sandbox()?;
    let scratch = tempfile::tempdir()?;
    let module_path = scratch.path().join("module.wasm");
    std::fs::write(&module_path, wasm)?;
    let mut command = Command::new("node");
    command.arg("--no-warnings").arg(script_path());
    command.arg("--dir").arg(format!("{}::{GUEST_DIR}", sandbox.path().display()));
    for (key, value) in &invocation.env {
        command.arg("--env").arg(format!("{key}={value}"));
    }
    command.arg("--expect-stdout").arg(stdout).arg("--expect-exit").arg(exit_code.to_string());
    command.arg(&module_path).args(&invocation.args);
    let output = command.stdin(Stdio::null()).output().context("failed to run node")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    Ok(Some(output.status.success() && stderr.ends_with("ok\n")))
}

/// The node script's own check of everything a run shows (`--expect-stdout`,
/// `--expect-stderr`, `--expect-files`, `--expect-exit`), as a user would run
/// it: `None` without node, else whether it reported `ok` (and its report).
pub fn node_check_outcome(wasm: &[u8], invocation: &Invocation, expected: &Outcome) -> Result<Option<(bool, String)>> {
    if Command::new("node").arg("--version").stdout(Stdio::null()).status().is_err() {
        return Ok(None);
    }
    let exit_code = expected.exit_code.context("a trap cannot be expected by the node script")?;
    let sandbox = invocation.sandbox()?;
    let scratch = tempfile::tempdir()?;
    let module_path = scratch.path().join("module.wasm");
    std::fs::write(&module_path, wasm)?;
    let (stdout, stderr, files) =
        (scratch.path().join("expected.stdout"), scratch.path().join("expected.stderr"), scratch.path().join("files"));
    std::fs::write(&stdout, &expected.stdout)?;
    std::fs::write(&stderr, &expected.stderr)?;
    std::fs::create_dir(&files)?;
    for (path, contents) in &expected.files {
        match path.strip_suffix('/') {
            Some(dir) => std::fs::create_dir_all(files.join(dir))?,
            None => std::fs::write(files.join(path), contents)?,
        }
    }
    let mut command = Command::new("node");
    command.arg("--no-warnings").arg(script_path());
    command.arg("--dir").arg(format!("{}::{GUEST_DIR}", sandbox.path().display()));
    for (key, value) in &invocation.env {
        command.arg("--env").arg(format!("{key}={value}"));
    }
    command.arg("--expect-stdout").arg(&stdout).arg("--expect-stderr").arg(&stderr);
    command.arg("--expect-files").arg(&files).arg("--expect-exit").arg(exit_code.to_string());
    command.arg(&module_path).args(&invocation.args);
    let output = command.stdin(Stdio::null()).output().context("failed to run node")?;
    let report = String::from_utf8_lossy(&output.stderr).into_owned();
    Ok(Some((output.status.success() && report.ends_with("ok\n"), report)))
}
