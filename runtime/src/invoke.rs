//! Running one lowered module with WASI: a [`Session`] instantiates it with
//! `wasi_snapshot_preview1` served by `wasmtime_wasi::p1`, serves its
//! `karmem:*` imports from host functions registered per interface
//! ([`HostFunctions`]) or from other sessions' exports (the direct pattern,
//! [`SessionOptions::links`]), runs the handshake ([`crate::handshake`]),
//! and calls exports with `Value`s (docs/ABI.md §3) or runs `_start`.
//!
//! Owns: the store data with the WASI context, import serving, value calls.
//! Leaves to [`crate::Guest`] the shared-memory windows and pooling: a
//! session has no shared memories (an interface with memories is refused),
//! and its memory limit and timeout are its own, set like a guest's.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use karmem_format::layout::Layout;
use karmem_format::{Limits, Value};
use wasmtime::{Caller, Extern, Instance, Linker, Memory, Store, StoreLimits, StoreLimitsBuilder, Val, ValType};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::WasmtimeResultExt;
use crate::handshake::{self, AbiInstance, ModuleAbi};
use crate::link::GuestInterfaces;
use crate::runtime::{EpochTicker, Runtime};

/// An epoch deadline that never fires (as in `guest.rs`).
const NO_DEADLINE: u64 = u64::MAX / 2;

/// A host implementation of one imported function: the decoded argument
/// struct in, the result struct out (an empty record for no results).
pub type HostFn = Arc<dyn Fn(&Value) -> Result<Value> + Send + Sync>;

/// Host functions registered per interface, by KarmemIDL names.
#[derive(Clone, Default)]
pub struct HostFunctions {
    functions: BTreeMap<(String, String), HostFn>,
}

impl fmt::Debug for HostFunctions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.functions.keys()).finish()
    }
}

impl HostFunctions {
    /// Serves `interface.function` with `host`.
    pub fn register(&mut self, interface: &str, function: &str, host: HostFn) {
        self.functions.insert((interface.to_string(), function.to_string()), host);
    }
}

/// WASI preview1 context of a session.
#[derive(Debug, Clone, Default)]
pub struct WasiOptions {
    /// Program arguments (`argv`, the first being the program name).
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Preopened directories: host path, guest path.
    pub dirs: Vec<(PathBuf, String)>,
    /// Give the guest this process's stdin, stdout and stderr.
    pub inherit_stdio: bool,
}

/// How to build a [`Session`].
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// WASI preview1.
    pub wasi: WasiOptions,
    /// Wall-clock budget of each call (epoch interruption).
    pub timeout: Option<Duration>,
    /// Maximum linear-memory size in bytes.
    pub max_memory_bytes: Option<usize>,
    /// Host functions for `karmem:*` imports.
    pub hosts: HostFunctions,
    /// Sessions whose exported interfaces serve this one's imports of the
    /// same name (direct pattern), checked by type hash.
    pub links: Vec<LinkedSession>,
}

/// A session shared as the exporter side of a link.
pub type LinkedSession = Arc<Mutex<Session>>;

/// Store data of a session.
#[allow(missing_debug_implementations)]
pub struct SessionState {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

/// One instantiated lowered module with WASI.
pub struct Session {
    store: Store<SessionState>,
    instance: Instance,
    memory: Memory,
    abi: Option<Arc<ModuleAbi>>,
    interfaces: GuestInterfaces,
    timeout: Option<Duration>,
    tick: Duration,
    _ticker: Arc<EpochTicker>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("interfaces", &self.interfaces).finish_non_exhaustive()
    }
}

/// What serves one `karmem:*` import.
enum Server {
    Host(HostFn),
    Linked(LinkedSession),
    Missing,
}

impl Session {
    /// Instantiates the lowered module `bytes` and, when it has the Karmem
    /// ABI, runs the handshake and checks every type hash against its
    /// `karmem:idl` schema. A module without the Karmem ABI (a plain WASI
    /// command) can still run `_start`.
    pub fn new(runtime: &Runtime, bytes: &[u8], options: &SessionOptions) -> Result<Session> {
        let abi = match ModuleAbi::from_module_bytes(bytes) {
            Ok(abi) => Some(Arc::new(abi)),
            Err(error) if has_section(bytes, "karmem:abi") || is_component(bytes) => return Err(error),
            Err(_) => None,
        };
        let module = runtime.load(bytes).context("failed to load the module")?;
        let mut linker: Linker<SessionState> = Linker::new(runtime.engine());
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut SessionState| &mut state.wasi)
            .into_anyhow()
            .context("failed to add WASI preview1 to the linker")?;
        let mut served_links = Vec::new();
        for import in module.module().imports() {
            let (module_name, field) = (import.module().to_string(), import.name().to_string());
            let Some(interface) = module_name.strip_prefix("karmem:") else { continue };
            let ty = import
                .ty()
                .func()
                .cloned()
                .with_context(|| format!("import `{module_name}`/`{field}` is not a function"))?;
            let server = match options.hosts.functions.get(&(interface.to_string(), field.clone())) {
                Some(host) => Server::Host(Arc::clone(host)),
                None => match find_link(&options.links, interface)? {
                    Some(link) => {
                        served_links.push((interface.to_string(), Arc::clone(&link)));
                        Server::Linked(link)
                    }
                    None => Server::Missing,
                },
            };
            let karmem_shape = ty.params().map(|p| p.is_i32()).eq([true, true])
                && ty.results().map(|r| matches!(r, ValType::I64)).eq([true]);
            if !karmem_shape || matches!(server, Server::Missing) {
                let what = format!("import `{module_name}`/`{field}`");
                let why = if karmem_shape { "is not served (no host function and no linked module exports it)" } else { "is not served (only Karmem ABI message functions are)" };
                linker
                    .func_new(&module_name, &field, ty, move |_, _, _| Err(wasmtime::Error::msg(format!("{what} {why}"))))
                    .into_anyhow()?;
                continue;
            }
            let abi = abi.clone().context("a module with `karmem:*` imports has no Karmem ABI sections")?;
            let (iface, function) = (interface.to_string(), field.clone());
            linker
                .func_new(&module_name, &field, ty, move |mut caller, params, results| {
                    match serve_import(&mut caller, &abi.layout, &server, &iface, &function, params) {
                        Ok(packed) => {
                            if let Some(slot) = results.first_mut() {
                                *slot = Val::I64(packed);
                            }
                            Ok(())
                        }
                        Err(error) => Err(wasmtime::Error::msg(format!("import `karmem:{iface}`/`{function}`: {error:#}"))),
                    }
                })
                .into_anyhow()?;
        }
        let mut wasi = wasmtime_wasi::WasiCtxBuilder::new();
        if options.wasi.inherit_stdio {
            wasi.inherit_stdio();
        }
        wasi.args(&options.wasi.args);
        for (key, value) in &options.wasi.env {
            wasi.env(key, value);
        }
        for (host, guest) in &options.wasi.dirs {
            wasi.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadWrite)
                .into_anyhow()
                .with_context(|| format!("failed to preopen `{}`", host.display()))?;
        }
        let mut limits = StoreLimitsBuilder::new().trap_on_grow_failure(false);
        if let Some(max) = options.max_memory_bytes {
            limits = limits.memory_size(max);
        }
        let state = SessionState { wasi: wasi.build_p1(), limits: limits.build() };
        let mut store = Store::new(runtime.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks(options.timeout, runtime.config().epoch_tick));
        let instance = linker
            .instantiate(&mut store, module.module())
            .into_anyhow()
            .context("failed to instantiate the module")?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .context("the module does not export a memory named `memory`")?;
        let mut session = Session {
            store,
            instance,
            memory,
            abi,
            interfaces: GuestInterfaces::default(),
            timeout: options.timeout,
            tick: runtime.config().epoch_tick,
            _ticker: runtime.ticker(),
        };
        if let Some(abi) = session.abi.clone() {
            let interfaces = handshake::discover(&mut session).context("the Karmem handshake failed")?;
            handshake::check_type_hashes(&interfaces, &abi.layout)?;
            for interface in interfaces.imports.iter().chain(&interfaces.exports) {
                ensure!(
                    interface.memories.is_empty(),
                    "interface `{}` has interface memories, which `run` does not map yet",
                    interface.name
                );
            }
            session.interfaces = interfaces;
            session.check_links(&served_links)?;
        }
        Ok(session)
    }

    /// The interfaces the handshake found (empty without the Karmem ABI).
    pub fn interfaces(&self) -> &GuestInterfaces {
        &self.interfaces
    }

    /// The module's schema (`None` without the Karmem ABI).
    pub fn abi(&self) -> Option<&ModuleAbi> {
        self.abi.as_deref()
    }

    /// Resolves a function name as written on the command line:
    /// `interface.function`, or a bare `function` when one exported
    /// interface has it. Kebab-case names match too.
    pub fn resolve_function(&self, written: &str) -> Result<(String, String)> {
        let matches = |name: &str| name == written || karmem_format::wave::kebab(name) == written;
        let mut found = Vec::new();
        for interface in &self.interfaces.exports {
            for function in &interface.functions {
                let qualified = format!("{}.{}", interface.name, function.name);
                let by_qualified = written
                    .rsplit_once('.')
                    .is_some_and(|(i, f)| i == interface.name && (f == function.name || karmem_format::wave::kebab(&function.name) == f));
                if by_qualified || matches(&function.name) || qualified == written {
                    found.push((interface.name.clone(), function.name.clone()));
                }
            }
        }
        match found.len() {
            1 => found.pop().context("no function"),
            0 => {
                let all: Vec<String> = self
                    .interfaces
                    .exports
                    .iter()
                    .flat_map(|i| i.functions.iter().map(move |f| format!("`{}.{}`", i.name, f.name)))
                    .collect();
                bail!("the module exports no function `{written}` (it exports {})", if all.is_empty() { "none".to_string() } else { all.join(", ") })
            }
            _ => {
                let names: Vec<String> = found.iter().map(|(i, f)| format!("`{i}.{f}`")).collect();
                bail!("`{written}` is ambiguous: {}", names.join(", "))
            }
        }
    }

    /// Calls exported `interface.function` with its argument struct and
    /// returns the decoded result struct.
    pub fn invoke(&mut self, interface: &str, function: &str, args: &Value) -> Result<Value> {
        let abi = self.abi.clone().context("the module has no Karmem ABI")?;
        let layout = &abi.layout;
        let shape = layout
            .function(interface, function)
            .with_context(|| format!("the schema has no function `{interface}.{function}`"))?;
        let message = karmem_format::value::encode(layout, shape.params, args)
            .map_err(|e| anyhow!("cannot encode the arguments of `{interface}.{function}`: {e}"))?;
        let result = self.call_raw(interface, function, message.as_slice())?;
        decode_results(layout, shape.results, &result)
            .with_context(|| format!("invalid result message from `{interface}.{function}`"))
    }

    /// Calls exported `interface.function` with an argument message; returns
    /// a copy of the result message.
    pub fn call_raw(&mut self, interface: &str, function: &str, message: &[u8]) -> Result<Vec<u8>> {
        let len = i32::try_from(message.len()).context("the argument message is larger than 2 GiB")?;
        let ptr = if message.is_empty() {
            0
        } else {
            let ptr = self.call_i32("KarmemAlloc", &[Val::I32(len), Val::I32(64)])?;
            self.memory
                .write(&mut self.store, ptr as u32 as usize, message)
                .map_err(|_| anyhow!("`KarmemAlloc` returned a buffer outside the guest's memory"))?;
            ptr
        };
        let name = format!("{interface}.{function}");
        let packed = handshake::single_i64(self.call_export(&name, &[Val::I32(ptr), Val::I32(len)])?, &name)?;
        let result = handshake::read_packed(self, packed).with_context(|| format!("result of `{name}`"))?;
        if ptr != 0 {
            self.call_export("KarmemFree", &[Val::I32(ptr), Val::I32(len), Val::I32(64)])?;
        }
        Ok(result)
    }

    /// Runs `_start` (a WASI command); returns its exit code (0 when it
    /// returns normally).
    pub fn run_start(&mut self) -> Result<i32> {
        ensure!(
            self.has_export("_start"),
            "the module has no `_start`: it is not a command (lower a component that exports `wasi:cli/run`)"
        );
        match self.call_export("_start", &[]) {
            Ok(_) => Ok(0),
            Err(error) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(error),
            },
        }
    }

    fn call_i32(&mut self, name: &str, params: &[Val]) -> Result<i32> {
        match self.call_export(name, params)?.as_slice() {
            [Val::I32(value)] => Ok(*value),
            _ => bail!("`{name}` did not return one `i32`"),
        }
    }

    fn check_links(&self, served: &[(String, LinkedSession)]) -> Result<()> {
        for (name, link) in served {
            let Some(import) = self.interfaces.imports.iter().find(|i| &i.name == name) else { continue };
            let exporter = link.lock().map_err(|_| anyhow!("a linked module's lock was poisoned"))?;
            let Some(export) = exporter.interfaces.exports.iter().find(|i| &i.name == name) else { continue };
            for function in &import.functions {
                let theirs = export
                    .functions
                    .iter()
                    .find(|f| f.name == function.name)
                    .with_context(|| format!("the linked module's `{name}` has no function `{}`", function.name))?;
                ensure!(
                    theirs.type_hash == function.type_hash,
                    "type hash mismatch for linked function `{name}.{}`: the importer says {:#018x}, the exporter {:#018x}",
                    function.name,
                    function.type_hash,
                    theirs.type_hash
                );
            }
        }
        Ok(())
    }
}

impl AbiInstance for Session {
    fn call_export(&mut self, name: &str, params: &[Val]) -> Result<Vec<Val>> {
        let func = self
            .instance
            .get_func(&mut self.store, name)
            .with_context(|| format!("the module has no exported function `{name}`"))?;
        let mut results = vec![Val::I32(0); func.ty(&self.store).results().len()];
        self.store.set_epoch_deadline(deadline_ticks(self.timeout, self.tick));
        func.call(&mut self.store, params, &mut results)
            .into_anyhow()
            .with_context(|| format!("call to `{name}` failed"))?;
        Ok(results)
    }

    fn has_export(&mut self, name: &str) -> bool {
        self.instance.get_func(&mut self.store, name).is_some()
    }

    fn read_bytes(&mut self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(offset)?;
        self.memory.read(&self.store, start, buf).map_err(|_| anyhow!("read outside the guest's memory"))
    }
}

fn deadline_ticks(timeout: Option<Duration>, tick: Duration) -> u64 {
    match timeout {
        Some(timeout) => {
            let ticks = timeout.as_nanos().div_ceil(tick.as_nanos().max(1)) + 1;
            u64::try_from(ticks).unwrap_or(NO_DEADLINE).min(NO_DEADLINE)
        }
        None => NO_DEADLINE,
    }
}

fn decode_results(layout: &Layout, results: karmem_format::layout::TypeId, bytes: &[u8]) -> Result<Value> {
    if bytes.is_empty() && layout.as_struct(results).is_some_and(|s| s.fields.is_empty()) {
        return Ok(Value::Record(Vec::new()));
    }
    karmem_format::value::decode(layout, results, bytes, &Limits::default()).map_err(|e| anyhow!("{e}"))
}

fn find_link(links: &[LinkedSession], interface: &str) -> Result<Option<LinkedSession>> {
    for link in links {
        let session = link.lock().map_err(|_| anyhow!("a linked module's lock was poisoned"))?;
        if session.interfaces.exports.iter().any(|i| i.name == interface) {
            return Ok(Some(Arc::clone(link)));
        }
    }
    Ok(None)
}

/// Serves one `karmem:*` import call: reads and checks the argument
/// message, runs the host function or the linked export, and writes the
/// result message into the caller through its `KarmemAlloc`.
fn serve_import(
    caller: &mut Caller<'_, SessionState>,
    layout: &Layout,
    server: &Server,
    interface: &str,
    function: &str,
    params: &[Val],
) -> Result<i64> {
    let (ptr, len) = match params {
        [Val::I32(ptr), Val::I32(len)] => (*ptr as u32 as usize, *len as u32 as usize),
        _ => bail!("expected `(ptr: i32, len: i32)`"),
    };
    let memory = match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => memory,
        _ => bail!("the caller exports no `memory`"),
    };
    let mut message = vec![0; len];
    memory.read(&*caller, ptr, &mut message).map_err(|_| anyhow!("argument message outside the caller's memory"))?;
    let shape = layout
        .function(interface, function)
        .with_context(|| format!("the schema has no function `{interface}.{function}`"))?;
    let args = decode_results(layout, shape.params, &message).context("invalid argument message")?;
    let result = match server {
        Server::Host(host) => {
            let value = host(&args)?;
            if layout.as_struct(shape.results).is_some_and(|s| s.fields.is_empty()) {
                Vec::new()
            } else {
                karmem_format::value::encode(layout, shape.results, &value)
                    .map_err(|e| anyhow!("the host function's result does not encode: {e}"))?
                    .as_slice()
                    .to_vec()
            }
        }
        Server::Linked(link) => {
            let mut exporter = link.lock().map_err(|_| anyhow!("a linked module's lock was poisoned"))?;
            let bytes = exporter.call_raw(interface, function, &message).context("the linked module failed")?;
            decode_results(layout, shape.results, &bytes).context("invalid result message from the linked module")?;
            bytes
        }
        Server::Missing => bail!("not served"),
    };
    if result.is_empty() {
        return Ok(0);
    }
    let result_len = i32::try_from(result.len()).context("result message larger than 2 GiB")?;
    let alloc = caller
        .get_export("KarmemAlloc")
        .and_then(Extern::into_func)
        .context("the caller exports no `KarmemAlloc`")?
        .typed::<(i32, i32), i32>(&*caller)
        .into_anyhow()
        .context("`KarmemAlloc` has the wrong type")?;
    let at = alloc.call(&mut *caller, (result_len, 64)).into_anyhow().context("`KarmemAlloc` failed")?;
    memory
        .write(&mut *caller, at as u32 as usize, &result)
        .map_err(|_| anyhow!("`KarmemAlloc` returned a buffer outside the caller's memory"))?;
    Ok((i64::from(result_len) << 32) | i64::from(at as u32))
}

fn has_section(bytes: &[u8], name: &str) -> bool {
    wasmparser::Parser::new(0).parse_all(bytes).any(|payload| {
        matches!(payload, Ok(wasmparser::Payload::CustomSection(section)) if section.name() == name)
    })
}

fn is_component(bytes: &[u8]) -> bool {
    wasmparser::Parser::is_component(bytes)
}
