//! Three preview1 hosts for one core module: wasmtime with the component
//! model off (`wasmtime_wasi::p1`), wasmi (`wasmi_wasi`), and node
//! (`scripts/node-wasi-check.mjs`, V8 + `node:wasi`). Each runs `_start` with
//! the same arguments, environment, empty stdin and one preopened directory,
//! and reports what a user could observe. The reference, the original
//! component on wasmtime's component runtime, gets the same configuration.

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

/// The reference: the original component on wasmtime's component runtime
/// (`wasmtime_wasi::p2`), run through `wasi:cli/run`.
pub fn run_component(component: &[u8], invocation: &Invocation) -> Result<Outcome> {
    use wasmtime::component::{Component, Linker, ResourceTable};
    use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
    use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

    struct Host {
        ctx: WasiCtx,
        table: ResourceTable,
    }
    impl WasiView for Host {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
        }
    }

    let sandbox = invocation.sandbox()?;
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    let engine = wasmtime::Engine::new(&config).map_err(wasmtime_error)?;
    let component = Component::new(&engine, component).map_err(wasmtime_error)?;
    let mut linker: Linker<Host> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(wasmtime_error)?;
    let stdout = MemoryOutputPipe::new(1 << 20);
    let stderr = MemoryOutputPipe::new(1 << 20);
    let mut builder = WasiCtxBuilder::new();
    builder.args(&invocation.args).stdout(stdout.clone()).stderr(stderr.clone());
    for (key, value) in &invocation.env {
        builder.env(key, value);
    }
    builder.preopened_dir(sandbox.path(), GUEST_DIR, FsPerms::ReadWrite).map_err(wasmtime_error)?;
    let mut store = wasmtime::Store::new(&engine, Host { ctx: builder.build(), table: ResourceTable::new() });
    let command = wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)
        .map_err(wasmtime_error)?;
    let exit_code = match command.wasi_cli_run().call_run(&mut store) {
        Ok(Ok(())) => Some(0),
        Ok(Err(())) => Some(1),
        Err(error) => error.downcast_ref::<wasmtime_wasi::I32Exit>().map(|exit| exit.0),
    };
    drop(store);
    Ok(Outcome {
        stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
        exit_code,
        files: collect_files(sandbox.path())?,
    })
}

pub fn run_wasmtime(wasm: &[u8], invocation: &Invocation) -> Result<Outcome> {
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
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start").map_err(wasmtime_error)?;
    let exit_code = match start.call(&mut store, ()) {
        Ok(()) => Some(0),
        Err(error) => error.downcast_ref::<wasmtime_wasi::I32Exit>().map(|exit| exit.0),
    };
    drop(store);
    Ok(Outcome {
        stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
        exit_code,
        files: collect_files(sandbox.path())?,
    })
}

fn wasmtime_error(error: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("wasmtime: {error:?}")
}

pub fn run_wasmi(wasm: &[u8], invocation: &Invocation) -> Result<Outcome> {
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
    let start =
        instance.get_typed_func::<(), ()>(&store, "_start").map_err(|e| anyhow::anyhow!("wasmi: {e}"))?;
    let exit_code = match start.call(&mut store, ()) {
        Ok(()) => Some(0),
        Err(error) => error.i32_exit_status(),
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
    })
}

/// `None` when `node` is not installed.
pub fn run_node(wasm: &[u8], invocation: &Invocation) -> Result<Option<Outcome>> {
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
