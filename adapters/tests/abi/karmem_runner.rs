//! A differential-harness runner for modules lowered the way `karmem-bridge
//! lower` does by default (`--abi karmem`, `--wasi shim`), on two core
//! runtimes: wasmtime with its preview1 WASI (`wasmtime_wasi::p1`) and wasmi
//! with `wasmi_wasi`. Every call is an argument message built with
//! `karmem-format`'s `Value` codec (from the invocation's WAVE text), and
//! every result a message decoded (validated) by it. Host imports
//! (`karmem:fixtures/host`: `log`, `next-id`, `lines`, the `tally` resource)
//! are served over the Karmem ABI and recorded as effects exactly as the
//! reference runner records them; WASI gets the reference runner's
//! environment (arguments, variables, a read-write `/sandbox` holding
//! `input.txt`), and stdout, stderr and changed sandbox files are effects.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result, anyhow, bail};
use karmem_adapters::abi::{EDGE_MEMORY, Options, World};
use karmem_adapters::wasi::{WasiMode, finish_for_preview1, recognize_preview1_adapter};
use karmem_format::layout::{Kind, Layout, TypeId};
use karmem_format::wave::kebab;
use karmem_format::{Limits, Value};
use karmem_tests::harness::{Completion, Effect, Outcome, Runner};
use karmem_tests::invocation::{Action, Arg, Invocation};
use karmem_tests::reference::{FIXTURE_ARGS, FIXTURE_ENV, SANDBOX_GUEST_PATH, SANDBOX_INPUT};
use karmem_tests::value::Value as TValue;
use karmem_wit_import::Side;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Type as CType, Val as CVal};

/// The core runtime a [`KarmemRunner`] runs the lowered module on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Wasmtime,
    Wasmi,
}

/// `karmem-bridge lower`'s default pipeline (`--abi karmem`, no `--wasi`):
/// a wasip1 component whose only WASI user is the preview1 adapter loses
/// the adapter and keeps its `wasi_snapshot_preview1` imports; any other
/// is lowered with the canonical boundary and its WASI 0.2 imports served
/// by the preview2-on-preview1 shim (before the Karmem ABI pass, which
/// drops `cabi_realloc`); then the Karmem ABI goes at the edge.
pub fn lower_karmem(component: &[u8]) -> Result<(World, Vec<u8>)> {
    let (world, bytes, _) = lower_karmem_mode(component)?;
    Ok((world, bytes))
}

/// [`lower_karmem`], also saying how WASI was served: [`WasiMode::Preview1`]
/// when the preview1 adapter was dropped, else [`WasiMode::Shim`].
pub fn lower_karmem_mode(component: &[u8]) -> Result<(World, Vec<u8>, WasiMode)> {
    lower_karmem_with(component, false)
}

/// [`lower_karmem_mode`]; `shim_only` keeps a preview1 adapter (`--wasi shim`).
pub fn lower_karmem_with(component: &[u8], shim_only: bool) -> Result<(World, Vec<u8>, WasiMode)> {
    let (world, lowered, mode) = lower_karmem_full(component, shim_only, false)?;
    Ok((world, lowered.module, mode))
}

/// [`lower_karmem_with`], with `multi_memory` as `lower --multi-memory`
/// (separate instance memories kept, the Karmem edge in a memory of its
/// own), and the adapters' warnings.
pub fn lower_karmem_full(
    component: &[u8],
    shim_only: bool,
    multi_memory: bool,
) -> Result<(World, karmem_adapters::abi::Lowered, WasiMode)> {
    let options = karmem_core_lowering::Options { multi_memory, ..karmem_core_lowering::Options::default() };
    let mut lowered = None;
    if !shim_only
        && has_preview1_adapter(component)?
        && let Ok(Some((module, report))) =
            karmem_core_lowering::lower_dropping_preview1_adapter(component, &options, &adapter_shape)
        && report.wasi_imports_left.is_empty()
    {
        lowered = Some((module, WasiMode::Preview1));
    }
    let (canonical, mode) = match lowered {
        Some(found) => found,
        None => (karmem_core_lowering::lower(component, &options)?, WasiMode::Shim),
    };
    // each WASI 0.2 import allocates with the realloc its `canon lower` names
    let reallocs: HashMap<String, String> = karmem_core_lowering::link::read_canonical_abi(&canonical)?
        .into_iter()
        .filter(|entry| entry.kind == "import")
        .filter_map(|entry| Some((entry.name, entry.realloc?)))
        .collect();
    let realloc_of = |module: &str, field: &str| {
        reallocs.get(&format!("{module}#{field}")).cloned().unwrap_or_else(|| "cabi_realloc".to_string())
    };
    let finished = finish_for_preview1(&canonical, mode, &realloc_of)?;
    let world = World::from_component(component)?;
    let options = Options { edge_memory: multi_memory, ..Options::default() };
    let lowered = karmem_adapters::abi::karmem_abi_with_warnings(&finished.module, &world, &options)?;
    Ok((world, lowered, mode))
}

fn has_preview1_adapter(component: &[u8]) -> Result<bool> {
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        if let wasmparser::Payload::ModuleSection { unchecked_range, .. } = payload? {
            let module = component.get(unchecked_range).context("module range")?;
            if recognize_preview1_adapter(module)?.is_some() {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn adapter_shape(module: &[u8]) -> Result<Option<karmem_core_lowering::preview1::AdapterShape>> {
    Ok(recognize_preview1_adapter(module)?.map(|adapter| karmem_core_lowering::preview1::AdapterShape {
        preview1_exports: adapter.preview1_exports,
        run_export: adapter.run_export,
    }))
}

/// The host imports' state, the same on both runtimes.
#[derive(Default, Clone)]
pub struct HostState {
    layout: Option<Arc<Layout>>,
    /// (IDL interface, IDL function) -> (WIT interface, WIT function).
    names: HashMap<(String, String), (String, String)>,
    effects: Vec<Effect>,
    next_id: u32,
    next_handle: u32,
    tallies: HashMap<u32, u64>,
}

/// How a guest call ended.
enum Step {
    Returned(Option<i64>),
    Trapped(String),
    Exited(i32),
}

/// One live instance on one runtime.
trait Live {
    fn call(&mut self, name: &str, args: &[i32]) -> Result<Step>;
    fn read(&mut self, ptr: usize, len: usize) -> Result<Vec<u8>>;
    fn write(&mut self, ptr: usize, bytes: &[u8]) -> Result<()>;
    /// Host effects, then new stdout and stderr.
    fn take_effects(&mut self) -> Result<Vec<Effect>>;
}

type Factory = Box<dyn Fn() -> Result<Box<dyn Live>>>;

pub struct KarmemRunner {
    layout: Arc<Layout>,
    world: World,
    exports: Vec<String>,
    factory: Factory,
    live: Option<Box<dyn Live>>,
    /// Handles bound by invocations.
    handles: HashMap<String, u32>,
    /// Parameter types of the component's exports by core name, for
    /// parsing WAVE arguments as the reference runner does.
    param_types: HashMap<String, Vec<CType>>,
    sandbox: tempfile::TempDir,
    sandbox_files: BTreeMap<String, Vec<u8>>,
}

/// The lowered module's (module, name) function imports and its export names.
/// (module, name) of each function import.
type Imports = Vec<(String, String)>;

fn imports_and_exports(bytes: &[u8]) -> Result<(Imports, Vec<String>)> {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload? {
            wasmparser::Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import?;
                    if let wasmparser::TypeRef::Func(_) = import.ty {
                        imports.push((import.module.to_string(), import.name.to_string()));
                    }
                }
            }
            wasmparser::Payload::ExportSection(reader) => {
                for export in reader {
                    exports.push(export?.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

impl KarmemRunner {
    pub fn from_lowered(engine: Engine, component: &[u8], world: World, bytes: &[u8]) -> Result<KarmemRunner> {
        let param_types = export_param_types(component)?;
        let layout = Arc::new(Layout::new(&world.schema).map_err(|e| anyhow!("{e}"))?);
        let mut names = HashMap::new();
        for iface in world.interfaces.iter().filter(|i| i.side == Side::Import) {
            for f in &iface.functions {
                names.insert((iface.name.clone(), f.name.clone()), (iface.core_module.clone(), f.core_name.clone()));
            }
        }
        let host = HostState { layout: Some(layout.clone()), names, next_handle: 1, ..HostState::default() };
        let (imports, exports) = imports_and_exports(bytes)?;
        for (module, name) in &imports {
            if !module.starts_with("karmem:") && module != "wasi_snapshot_preview1" {
                bail!("the lowered module imports `{module}`/`{name}`, which this host does not serve");
            }
        }
        let sandbox = tempfile::tempdir().context("creating the sandbox directory")?;
        std::fs::write(sandbox.path().join("input.txt"), SANDBOX_INPUT)?;
        let sandbox_files = read_dir_files(sandbox.path())?;
        let sandbox_path = sandbox.path().to_path_buf();
        let factory: Factory = match engine {
            Engine::Wasmtime => wasmtime_factory(bytes, &imports, host, sandbox_path)?,
            Engine::Wasmi => wasmi_factory(bytes, &imports, host, sandbox_path)?,
        };
        Ok(KarmemRunner {
            layout,
            world,
            exports,
            factory,
            live: None,
            handles: HashMap::new(),
            param_types,
            sandbox,
            sandbox_files,
        })
    }

    /// The IDL (interface, function, core name) of a call's `interface#function`.
    fn resolve(&self, interface: Option<&str>, function: &str) -> Option<(String, String, String)> {
        for iface in self.world.interfaces.iter().filter(|i| i.side == Side::Export) {
            for f in &iface.functions {
                let matches = match interface {
                    None => f.core_name == function,
                    Some(i) => {
                        f.core_name == format!("{i}#{function}")
                            || (f.core_name.starts_with(&format!("{i}@")) && f.core_name.ends_with(&format!("#{function}")))
                    }
                };
                if matches {
                    return Some((iface.name.clone(), f.name.clone(), f.core_name.clone()));
                }
            }
        }
        None
    }

    fn call(&mut self, live: &mut dyn Live, call: &karmem_tests::invocation::Call) -> Result<Completion> {
        // `wasi:cli/run#run` is `_start` in a lowered command (docs/LOWERING.md,
        // `## WASI`): `ok` returns (or exits 0), `err` exits 1
        if call.interface.as_deref().is_some_and(|i| i.starts_with("wasi:cli/run")) && call.function == "run" {
            return Ok(match live.call("_start", &[])? {
                Step::Returned(_) | Step::Exited(0) => Completion::Returned(vec![TValue::Result(Ok(None))]),
                Step::Exited(1) => Completion::Returned(vec![TValue::Result(Err(None))]),
                Step::Exited(code) => Completion::Exited(code),
                Step::Trapped(message) => Completion::Trapped(message),
            });
        }
        let Some((iface, function, core_name)) = self.resolve(call.interface.as_deref(), &call.function) else {
            bail!("no export for `{}#{}`", call.interface.as_deref().unwrap_or(""), call.function);
        };
        let types = self.param_types.get(&core_name).cloned().context("component parameter types")?;
        let fl = self.layout.function(&iface, &function).context("layout")?;
        let params = self.layout.as_struct(fl.params).context("params")?.fields.clone();
        if params.len() != call.args.len() {
            bail!("`{function}` takes {} arguments, found {}", params.len(), call.args.len());
        }
        let mut fields = Vec::new();
        for ((field, arg), ty) in params.iter().zip(&call.args).zip(&types) {
            let value = match arg {
                Arg::Wave(text) => {
                    let val = match (ty, karmem_tests::invocation::parse_string_literal(text)) {
                        (CType::String, Some(text)) => CVal::String(text),
                        _ => CVal::from_wave(ty, text).map_err(|e| anyhow!("parsing `{text}`: {e}"))?,
                    };
                    from_val(&self.layout, field.ty, &val)?
                }
                Arg::Handle(name) => Value::U32(*self.handles.get(name).with_context(|| format!("no handle `${name}`"))?),
            };
            fields.push((field.name.clone(), value));
        }
        let message = karmem_format::value::encode(&self.layout, fl.params, &Value::Record(fields))
            .map_err(|e| anyhow!("{e}"))?;
        let message = message.as_slice().to_vec();
        let len = message.len() as i32;
        let Step::Returned(Some(ptr)) = live.call("KarmemAlloc", &[len, 64])? else { bail!("`KarmemAlloc` failed") };
        let ptr = ptr as i32;
        live.write(ptr as u32 as usize, &message)?;
        let packed = match live.call(&format!("{iface}.{function}"), &[ptr, len])? {
            Step::Returned(Some(p)) => p as u64,
            Step::Returned(None) => bail!("`{iface}.{function}` returned nothing"),
            Step::Trapped(message) => return Ok(Completion::Trapped(message)),
            Step::Exited(code) => return Ok(Completion::Exited(code)),
        };
        let Step::Returned(_) = live.call("KarmemFree", &[ptr, len, 64])? else { bail!("`KarmemFree` failed") };
        let (rptr, rlen) = ((packed & 0xFFFF_FFFF) as usize, (packed >> 32) as usize);
        let bytes = live.read(rptr, rlen)?;
        let result = karmem_format::value::decode(&self.layout, fl.results, &bytes, &Limits::default())
            .map_err(|e| anyhow!("invalid result message: {e}"))?;
        let result_fields = self.layout.as_struct(fl.results).context("results")?.fields.clone();
        let mut values = Vec::new();
        let mut bound = false;
        if let Value::Record(got) = result {
            for (field, (_, value)) in result_fields.iter().zip(got) {
                let layout = self.layout.clone();
                values.push(to_test_value(&layout, field.ty, &value, &mut |handle, borrow| match &call.bind {
                    Some(name) if !bound => {
                        bound = true;
                        self.handles.insert(name.clone(), handle);
                        format!("${name}")
                    }
                    _ => if borrow { "borrow" } else { "own" }.to_string(),
                }));
            }
        }
        Ok(Completion::Returned(values))
    }

    /// Drops a bound own handle through the module's `[resource-drop]` export.
    fn drop_handle(&mut self, live: &mut dyn Live, name: &str) -> Result<Completion> {
        let handle = self.handles.remove(name).with_context(|| format!("no handle `${name}`"))?;
        let drops: Vec<&String> = self.exports.iter().filter(|n| n.contains("[resource-drop]")).collect();
        let [drop] = drops.as_slice() else { bail!("cannot tell which resource `${name}` is: drops {drops:?}") };
        Ok(match live.call(drop, &[handle as i32])? {
            Step::Returned(_) => Completion::Returned(Vec::new()),
            Step::Trapped(message) => Completion::Trapped(message),
            Step::Exited(code) => Completion::Exited(code),
        })
    }

    /// Changed files in the sandbox since the last look, as effects.
    fn file_effects(&mut self) -> Result<Vec<Effect>> {
        let files = read_dir_files(self.sandbox.path())?;
        let mut effects = Vec::new();
        for (path, contents) in &files {
            if self.sandbox_files.get(path) != Some(contents) {
                let contents = String::from_utf8_lossy(contents).into_owned();
                effects.push(Effect::File { path: format!("{SANDBOX_GUEST_PATH}/{path}"), contents });
            }
        }
        self.sandbox_files = files;
        Ok(effects)
    }
}

impl Runner for KarmemRunner {
    fn invoke(&mut self, invocation: &Invocation) -> Result<Outcome> {
        let mut live = match self.live.take() {
            Some(live) => live,
            None => {
                // a trap or exit ended the last instance (docs/ABI.md, section 7):
                // a fresh one, as in the reference runner
                self.handles.clear();
                (self.factory)()?
            }
        };
        let completion = match &invocation.action {
            Action::Call(call) => self.call(live.as_mut(), call)?,
            Action::Drop(name) => self.drop_handle(live.as_mut(), name)?,
        };
        let mut effects = live.take_effects()?;
        effects.extend(self.file_effects()?);
        if matches!(completion, Completion::Returned(_)) {
            self.live = Some(live);
        }
        Ok(Outcome { completion, effects })
    }
}

impl HostState {
    /// Serves one import call: the argument message in, the result message
    /// out (empty for a function without results).
    fn serve(&mut self, iface: &str, function: &str, message: &[u8]) -> Result<Vec<u8>> {
        let layout = self.layout.clone().context("layout")?;
        let fl = layout.function(iface, function).context("function layout")?;
        let args = karmem_format::value::decode(&layout, fl.params, message, &Limits::default())
            .map_err(|e| anyhow!("invalid argument message from the guest: {e}"))?;
        let (wit_iface, wit_fn) = self.names.get(&(iface.to_string(), function.to_string())).cloned().context("names")?;
        let arg_fields = layout.as_struct(fl.params).context("params")?.fields.clone();
        let Value::Record(arg_values) = &args else { bail!("arguments are not a record") };
        let arg_text: Vec<String> = arg_fields
            .iter()
            .zip(arg_values)
            .map(|(f, (_, v))| to_test_value(&layout, f.ty, v, &mut |_, _| "handle".to_string()).to_wave())
            .collect();
        let result: Option<Value> = match (wit_fn.as_str(), arg_values.as_slice()) {
            ("log", _) => None,
            ("next-id", []) => {
                self.next_id += 1;
                Some(Value::U32(self.next_id))
            }
            ("lines", [(_, Value::U32(count)), (_, Value::String(prefix))]) => {
                Some(Value::List((0..*count).map(|i| Value::String(format!("{prefix}{i}"))).collect()))
            }
            ("[constructor]tally", [(_, Value::U64(start))]) => Some(Value::U32(self.new_tally(*start))),
            ("[static]tally.named", [(_, Value::String(name))]) => Some(Value::U32(self.new_tally(name.len() as u64))),
            ("[method]tally.add", [(_, Value::U32(handle)), (_, Value::U64(amount))]) => {
                let total = self.tallies.get_mut(handle).context("unknown tally")?;
                *total = total.wrapping_add(*amount);
                Some(Value::U64(*total))
            }
            // functions without results are only recorded, as in the reference
            _ if layout.as_struct(fl.results).is_some_and(|r| r.fields.is_empty()) => None,
            (other, _) => bail!("no host implementation for `{other}`"),
        };
        let mut record = format!("{wit_iface}#{wit_fn}({})", arg_text.join(", "));
        let result_fields = layout.as_struct(fl.results).context("results")?.fields.clone();
        let out = match (&result, result_fields.first()) {
            (Some(value), Some(field)) => {
                record.push_str(" -> ");
                record.push_str(&to_test_value(&layout, field.ty, value, &mut |_, _| "handle".to_string()).to_wave());
                let message = Value::Record(vec![(field.name.clone(), value.clone())]);
                karmem_format::value::encode(&layout, fl.results, &message).map_err(|e| anyhow!("{e}"))?.as_slice().to_vec()
            }
            _ => Vec::new(),
        };
        self.effects.push(Effect::Host(record));
        Ok(out)
    }

    fn drop_tally(&mut self, handle: u32) {
        let total = self.tallies.remove(&handle).unwrap_or_default();
        self.effects.push(Effect::Host(format!("drop tally({total})")));
    }

    fn new_tally(&mut self, start: u64) -> u32 {
        let handle = self.next_handle;
        self.next_handle += 1;
        self.tallies.insert(handle, start);
        handle
    }
}

/// Bytes written to a pipe since `seen`, as text.
fn fresh_output(contents: &[u8], seen: &mut usize) -> Option<String> {
    let fresh = contents.get(*seen..)?;
    if fresh.is_empty() {
        return None;
    }
    *seen = contents.len();
    Some(String::from_utf8_lossy(fresh).into_owned())
}

fn packed(ptr: i32, len: usize) -> i64 {
    ((len as i64) << 32) | i64::from(ptr as u32)
}

// ---- wasmtime (component model off), WASI through wasmtime_wasi::p1 ----

struct WtData {
    host: HostState,
    wasi: wasmtime_wasi::p1::WasiP1Ctx,
}

struct WtLive {
    store: wasmtime::Store<WtData>,
    instance: wasmtime::Instance,
    memory: wasmtime::Memory,
    stdout: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
    stderr: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
    seen: (usize, usize),
}

fn wt_error(error: anyhow::Error) -> wasmtime::Error {
    wasmtime::Error::msg(format!("{error:#}"))
}

fn wasmtime_factory(bytes: &[u8], imports: &[(String, String)], host: HostState, sandbox: std::path::PathBuf) -> Result<Factory> {
    use wasmtime::{Caller, Extern, FuncType, Linker, Val, ValType};
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(false);
    let engine = wasmtime::Engine::new(&config)?;
    let module = wasmtime::Module::new(&engine, bytes)?;
    let mut linker: Linker<WtData> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |data: &mut WtData| &mut data.wasi)?;
    for (m, name) in imports.iter().filter(|(m, _)| m.starts_with("karmem:")) {
        let iface = m.trim_start_matches("karmem:").to_string();
        if name.starts_with("[resource-drop]") {
            let ty = FuncType::new(&engine, [ValType::I32], []);
            linker.func_new(m, name, ty, |mut caller: Caller<'_, WtData>, params, _| {
                let [Val::I32(handle)] = params else { return Err(wasmtime::Error::msg("bad drop")) };
                caller.data_mut().host.drop_tally(*handle as u32);
                Ok(())
            })?;
            continue;
        }
        let ty = FuncType::new(&engine, [ValType::I32, ValType::I32], [ValType::I64]);
        let field = name.clone();
        linker.func_new(m, name, ty, move |mut caller: Caller<'_, WtData>, params, results| {
            let [Val::I32(ptr), Val::I32(len)] = params else { return Err(wasmtime::Error::msg("bad arguments")) };
            // the message memory (docs/ABI.md §2): `KarmemMemory` when exported
            let memory = caller
                .get_export(EDGE_MEMORY)
                .or_else(|| caller.get_export("memory"))
                .and_then(Extern::into_memory)
                .context("memory")
                .map_err(wt_error)?;
            let (at, n) = (*ptr as u32 as usize, *len as u32 as usize);
            let message = memory.data(&caller).get(at..at + n).context("argument buffer").map_err(wt_error)?.to_vec();
            let out = caller.data_mut().host.serve(&iface, &field, &message).map_err(wt_error)?;
            let mut buffer = 0;
            if !out.is_empty() {
                let alloc = caller.get_export("KarmemAlloc").and_then(Extern::into_func).context("KarmemAlloc").map_err(wt_error)?;
                let ptr = alloc.typed::<(i32, i32), i32>(&caller)?.call(&mut caller, (out.len() as i32, 64))?;
                memory.write(&mut caller, ptr as u32 as usize, &out)?;
                buffer = packed(ptr, out.len());
            }
            if let Some(result) = results.first_mut() {
                *result = Val::I64(buffer);
            }
            Ok(())
        })?;
    }
    Ok(Box::new(move || {
        use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
        let stdout = MemoryOutputPipe::new(16 << 20);
        let stderr = MemoryOutputPipe::new(16 << 20);
        let mut builder = wasmtime_wasi::WasiCtxBuilder::new();
        builder.stdout(stdout.clone()).stderr(stderr.clone()).args(&FIXTURE_ARGS).envs(&FIXTURE_ENV);
        builder.preopened_dir(&sandbox, SANDBOX_GUEST_PATH, wasmtime_wasi::FsPerms::ReadWrite)?;
        let data = WtData { host: host.clone(), wasi: builder.build_p1() };
        let mut store = wasmtime::Store::new(&engine, data);
        let instance = linker.instantiate(&mut store, &module)?;
        let memory = match instance.get_memory(&mut store, EDGE_MEMORY) {
            Some(edge) => edge,
            None => instance.get_memory(&mut store, "memory").context("memory")?,
        };
        let mut live = WtLive { store, instance, memory, stdout, stderr, seen: (0, 0) };
        init(&mut live)?;
        Ok(Box::new(live) as Box<dyn Live>)
    }))
}

/// `_initialize` when exported, then `KarmemInit` (docs/ABI.md, section 2).
fn init(live: &mut dyn Live) -> Result<()> {
    match live.call("_initialize", &[]) {
        Ok(Step::Returned(_)) | Err(_) => {}
        Ok(_) => bail!("`_initialize` failed"),
    }
    match live.call("KarmemInit", &[])? {
        Step::Returned(_) => Ok(()),
        _ => bail!("`KarmemInit` failed"),
    }
}

impl Live for WtLive {
    fn call(&mut self, name: &str, args: &[i32]) -> Result<Step> {
        let func = self.instance.get_func(&mut self.store, name).with_context(|| format!("no export `{name}`"))?;
        let params: Vec<wasmtime::Val> = args.iter().map(|a| wasmtime::Val::I32(*a)).collect();
        let mut results = vec![wasmtime::Val::I32(0); func.ty(&self.store).results().len()];
        Ok(match func.call(&mut self.store, &params, &mut results) {
            Ok(()) => Step::Returned(results.first().and_then(|v| v.i64().or_else(|| v.i32().map(i64::from)))),
            Err(error) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => Step::Exited(exit.0),
                None => Step::Trapped(format!("{error:#}")),
            },
        })
    }

    fn read(&mut self, ptr: usize, len: usize) -> Result<Vec<u8>> {
        Ok(self.memory.data(&self.store).get(ptr..ptr + len).context("read out of bounds")?.to_vec())
    }

    fn write(&mut self, ptr: usize, bytes: &[u8]) -> Result<()> {
        self.memory.write(&mut self.store, ptr, bytes).map_err(|e| anyhow!("{e}"))
    }

    fn take_effects(&mut self) -> Result<Vec<Effect>> {
        let mut effects = std::mem::take(&mut self.store.data_mut().host.effects);
        if let Some(text) = fresh_output(&self.stdout.contents(), &mut self.seen.0) {
            effects.push(Effect::Stdout(text));
        }
        if let Some(text) = fresh_output(&self.stderr.contents(), &mut self.seen.1) {
            effects.push(Effect::Stderr(text));
        }
        Ok(effects)
    }
}

// ---- wasmi, WASI through wasmi_wasi ----

struct WiData {
    host: HostState,
    wasi: wasmi_wasi::WasiCtx,
}

type Pipe = Arc<RwLock<Cursor<Vec<u8>>>>;

struct WiLive {
    store: wasmi::Store<WiData>,
    instance: wasmi::Instance,
    memory: wasmi::Memory,
    stdout: Pipe,
    stderr: Pipe,
    seen: (usize, usize),
}

fn wi_error(error: anyhow::Error) -> wasmi::Error {
    wasmi::Error::new(format!("{error:#}"))
}

fn wasmi_factory(bytes: &[u8], imports: &[(String, String)], host: HostState, sandbox: std::path::PathBuf) -> Result<Factory> {
    use wasmi::{Caller, Extern, FuncType, Linker, Val, ValType};
    let engine = wasmi::Engine::default();
    let module = wasmi::Module::new(&engine, bytes).map_err(|e| anyhow!("wasmi rejected the module: {e}"))?;
    let mut linker: Linker<WiData> = Linker::new(&engine);
    wasmi_wasi::add_to_linker(&mut linker, |data: &mut WiData| &mut data.wasi).map_err(|e| anyhow!("{e}"))?;
    for (m, name) in imports.iter().filter(|(m, _)| m.starts_with("karmem:")) {
        let iface = m.trim_start_matches("karmem:").to_string();
        if name.starts_with("[resource-drop]") {
            let ty = FuncType::new([ValType::I32], []);
            linker
                .func_new(m, name, ty, |mut caller: Caller<'_, WiData>, params, _| {
                    let [Val::I32(handle)] = params else { return Err(wasmi::Error::new("bad drop")) };
                    caller.data_mut().host.drop_tally(*handle as u32);
                    Ok(())
                })
                .map_err(|e| anyhow!("{e}"))?;
            continue;
        }
        let ty = FuncType::new([ValType::I32, ValType::I32], [ValType::I64]);
        let field = name.clone();
        linker
            .func_new(m, name, ty, move |mut caller: Caller<'_, WiData>, params, results| {
                let [Val::I32(ptr), Val::I32(len)] = params else { return Err(wasmi::Error::new("bad arguments")) };
                let memory = caller
                    .get_export(EDGE_MEMORY)
                    .or_else(|| caller.get_export("memory"))
                    .and_then(Extern::into_memory)
                    .context("memory")
                    .map_err(wi_error)?;
                let (at, n) = (*ptr as u32 as usize, *len as u32 as usize);
                let message = memory.data(&caller).get(at..at + n).context("argument buffer").map_err(wi_error)?.to_vec();
                let out = caller.data_mut().host.serve(&iface, &field, &message).map_err(wi_error)?;
                let mut buffer = 0;
                if !out.is_empty() {
                    let alloc =
                        caller.get_export("KarmemAlloc").and_then(Extern::into_func).context("KarmemAlloc").map_err(wi_error)?;
                    let ptr = alloc.typed::<(i32, i32), i32>(&caller)?.call(&mut caller, (out.len() as i32, 64))?;
                    memory.write(&mut caller, ptr as u32 as usize, &out).map_err(|e| wasmi::Error::new(format!("{e}")))?;
                    buffer = packed(ptr, out.len());
                }
                if let Some(result) = results.first_mut() {
                    *result = Val::I64(buffer);
                }
                Ok(())
            })
            .map_err(|e| anyhow!("{e}"))?;
    }
    Ok(Box::new(move || {
        use wasmi_wasi::wasi_common::pipe::{ReadPipe, WritePipe};
        let stdout: Pipe = Arc::new(RwLock::new(Cursor::new(Vec::new())));
        let stderr: Pipe = Arc::new(RwLock::new(Cursor::new(Vec::new())));
        let dir = wasmi_wasi::sync::Dir::open_ambient_dir(&sandbox, wasmi_wasi::sync::ambient_authority())?;
        let mut builder = wasmi_wasi::WasiCtxBuilder::new();
        builder
            .args(&FIXTURE_ARGS.map(String::from))?
            .stdin(Box::new(ReadPipe::from(Vec::<u8>::new())))
            .stdout(Box::new(WritePipe::from_shared(stdout.clone())))
            .stderr(Box::new(WritePipe::from_shared(stderr.clone())));
        for (key, value) in FIXTURE_ENV {
            builder.env(key, value)?;
        }
        builder.preopened_dir(dir, SANDBOX_GUEST_PATH)?;
        let data = WiData { host: host.clone(), wasi: builder.build() };
        let mut store = wasmi::Store::new(&engine, data);
        let instance = linker.instantiate_and_start(&mut store, &module).map_err(|e| anyhow!("wasmi: {e}"))?;
        let memory = match instance.get_memory(&store, EDGE_MEMORY) {
            Some(edge) => edge,
            None => instance.get_memory(&store, "memory").context("memory")?,
        };
        let mut live = WiLive { store, instance, memory, stdout, stderr, seen: (0, 0) };
        init(&mut live)?;
        Ok(Box::new(live) as Box<dyn Live>)
    }))
}

impl Live for WiLive {
    fn call(&mut self, name: &str, args: &[i32]) -> Result<Step> {
        let func = self.instance.get_func(&self.store, name).with_context(|| format!("no export `{name}`"))?;
        let params: Vec<wasmi::Val> = args.iter().map(|a| wasmi::Val::I32(*a)).collect();
        let mut results = vec![wasmi::Val::I32(0); func.ty(&self.store).results().len()];
        Ok(match func.call(&mut self.store, &params, &mut results) {
            Ok(()) => Step::Returned(results.first().and_then(|v| v.i64().or_else(|| v.i32().map(i64::from)))),
            Err(error) => match error.i32_exit_status() {
                Some(code) => Step::Exited(code),
                None => Step::Trapped(format!("{error}")),
            },
        })
    }

    fn read(&mut self, ptr: usize, len: usize) -> Result<Vec<u8>> {
        Ok(self.memory.data(&self.store).get(ptr..ptr + len).context("read out of bounds")?.to_vec())
    }

    fn write(&mut self, ptr: usize, bytes: &[u8]) -> Result<()> {
        self.memory.write(&mut self.store, ptr, bytes).map_err(|e| anyhow!("{e}"))
    }

    fn take_effects(&mut self) -> Result<Vec<Effect>> {
        let mut effects = std::mem::take(&mut self.store.data_mut().host.effects);
        for (pipe, seen, stdout) in [(&self.stdout, &mut self.seen.0, true), (&self.stderr, &mut self.seen.1, false)] {
            let guard = pipe.read().map_err(|_| anyhow!("a pipe's lock is poisoned"))?;
            if let Some(text) = fresh_output(guard.get_ref(), seen) {
                effects.push(if stdout { Effect::Stdout(text) } else { Effect::Stderr(text) });
            }
        }
        Ok(effects)
    }
}

/// Every regular file under `dir`, by path relative to it.
fn read_dir_files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().into_owned();
                files.insert(relative, std::fs::read(&path)?);
            }
        }
    }
    Ok(files)
}

/// The parameter types of every exported function, by core name.
fn export_param_types(component: &[u8]) -> Result<HashMap<String, Vec<CType>>> {
    let engine = karmem_tests::reference::engine();
    let component = wasmtime::component::Component::new(engine, component).map_err(anyhow::Error::from)?;
    let mut out = HashMap::new();
    let params = |f: &wasmtime::component::types::ComponentFunc| f.params().map(|(_, t)| t).collect::<Vec<_>>();
    for (name, item) in component.component_type().exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(f) => {
                out.insert(name.to_string(), params(&f));
            }
            ComponentItem::ComponentInstance(i) => {
                for (fname, item) in i.exports(engine) {
                    if let ComponentItem::ComponentFunc(f) = item.ty {
                        out.insert(format!("{name}#{fname}"), params(&f));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A component value (parsed by wasmtime) as a format `Value` of type `ty`.
fn from_val(layout: &Layout, ty: TypeId, val: &CVal) -> Result<Value> {
    let inner = |t: TypeId, v: &CVal| from_val(layout, t, v);
    Ok(match (&layout.get(ty).kind, val) {
        (_, CVal::Bool(b)) => Value::Bool(*b),
        (_, CVal::S8(x)) => Value::S8(*x),
        (_, CVal::S16(x)) => Value::S16(*x),
        (_, CVal::S32(x)) => Value::S32(*x),
        (_, CVal::S64(x)) => Value::S64(*x),
        (_, CVal::U8(x)) => Value::U8(*x),
        (_, CVal::U16(x)) => Value::U16(*x),
        (_, CVal::U32(x)) => Value::U32(*x),
        (_, CVal::U64(x)) => Value::U64(*x),
        (_, CVal::Float32(x)) => Value::F32(*x),
        (_, CVal::Float64(x)) => Value::F64(*x),
        (_, CVal::Char(c)) => Value::Char(*c),
        (_, CVal::String(t)) => Value::String(t.clone()),
        (Kind::Array { .. }, CVal::Map(entries)) => {
            let (k, v) = layout.map_types(ty).context("a map value for a list type")?;
            Value::Map(entries.iter().map(|(key, value)| Ok((inner(k, key)?, inner(v, value)?))).collect::<Result<_>>()?)
        }
        (Kind::Array { elem, .. } | Kind::FixedArray { elem, .. }, CVal::List(items) | CVal::FixedLengthList(items)) => {
            Value::List(items.iter().map(|v| inner(*elem, v)).collect::<Result<_>>()?)
        }
        (Kind::Struct(s), CVal::Record(fields)) => Value::Record(
            s.fields.iter().zip(fields).map(|(f, (_, v))| Ok((f.name.clone(), inner(f.ty, v)?))).collect::<Result<_>>()?,
        ),
        (Kind::Struct(s), CVal::Tuple(items)) => Value::Record(
            s.fields.iter().zip(items).map(|(f, v)| Ok((f.name.clone(), inner(f.ty, v)?))).collect::<Result<_>>()?,
        ),
        (Kind::Union(u), CVal::Variant(name, payload)) => {
            let case = u.cases.iter().find(|c| kebab(&c.name) == *name).context("variant case")?;
            let payload = match (case.ty, payload) {
                (Some(t), Some(p)) => Some(Box::new(inner(t, p)?)),
                _ => None,
            };
            Value::Variant(case.name.clone(), payload)
        }
        (Kind::Enum(e), CVal::Enum(name)) => {
            Value::Enum(e.cases.iter().find(|(c, _)| kebab(c) == *name).context("enum case")?.0.clone())
        }
        (Kind::Flags(f), CVal::Flags(set)) => {
            Value::Flags(f.flags.iter().filter(|n| set.contains(&kebab(n))).cloned().collect())
        }
        (Kind::Option { some, .. }, CVal::Option(v)) => {
            Value::Option(v.as_ref().map(|v| inner(*some, v)).transpose()?.map(Box::new))
        }
        (Kind::Result { ok, err, .. }, CVal::Result(r)) => {
            let side = |t: &Option<TypeId>, v: &Option<Box<CVal>>| -> Result<Option<Box<Value>>> {
                Ok(match (t, v) {
                    (Some(t), Some(v)) => Some(Box::new(inner(*t, v)?)),
                    _ => None,
                })
            };
            match r {
                Ok(v) => Value::Result(Ok(side(ok, v)?)),
                Err(v) => Value::Result(Err(side(err, v)?)),
            }
        }
        (kind, val) => bail!("cannot convert {val:?} to {kind:?}"),
    })
}

/// A format `Value` of type `ty` as the harness's component value.
fn to_test_value(layout: &Layout, ty: TypeId, value: &Value, handle: &mut dyn FnMut(u32, bool) -> String) -> TValue {
    let mut inner = |t: TypeId, v: &Value| to_test_value(layout, t, v, handle);
    match (&layout.get(ty).kind, value) {
        (Kind::Handle { borrow, .. }, Value::U32(h)) => TValue::Handle(handle(*h, *borrow)),
        (Kind::Struct(s), Value::Record(fields)) if !s.dynamic => {
            TValue::Tuple(s.fields.iter().zip(fields).map(|(f, (_, v))| inner(f.ty, v)).collect())
        }
        (Kind::Struct(s), Value::Record(fields)) => {
            TValue::Record(s.fields.iter().zip(fields).map(|(f, (n, v))| (kebab(n), inner(f.ty, v))).collect())
        }
        (Kind::Union(u), Value::Variant(name, payload)) => {
            let case = u.cases.iter().find(|c| c.name == *name);
            let payload = match (case.and_then(|c| c.ty), payload) {
                (Some(t), Some(p)) => Some(Box::new(inner(t, p))),
                _ => None,
            };
            TValue::Variant(kebab(name), payload)
        }
        (Kind::Array { .. }, Value::Map(entries)) => {
            // as the reference runner shows a map: a list of (key, value) tuples
            let (k, v) = layout.map_types(ty).unwrap_or((ty, ty));
            TValue::List(entries.iter().map(|(key, value)| TValue::Tuple(vec![inner(k, key), inner(v, value)])).collect())
        }
        (Kind::Array { elem, .. } | Kind::FixedArray { elem, .. }, Value::List(items)) => {
            TValue::List(items.iter().map(|v| inner(*elem, v)).collect())
        }
        (Kind::Option { some, .. }, Value::Option(v)) => TValue::Option(v.as_ref().map(|v| Box::new(inner(*some, v)))),
        (Kind::Result { ok, err, .. }, Value::Result(r)) => {
            let side = |t: &Option<TypeId>, v: &Option<Box<Value>>, inner: &mut dyn FnMut(TypeId, &Value) -> TValue| match (t, v) {
                (Some(t), Some(v)) => Some(Box::new(inner(*t, v))),
                _ => None,
            };
            match r {
                Ok(v) => TValue::Result(Ok(side(ok, v, &mut inner))),
                Err(v) => TValue::Result(Err(side(err, v, &mut inner))),
            }
        }
        (_, v) => scalar(v),
    }
}

fn scalar(value: &Value) -> TValue {
    match value {
        Value::Bool(b) => TValue::Bool(*b),
        Value::S8(x) => TValue::S8(*x),
        Value::S16(x) => TValue::S16(*x),
        Value::S32(x) => TValue::S32(*x),
        Value::S64(x) => TValue::S64(*x),
        Value::U8(x) => TValue::U8(*x),
        Value::U16(x) => TValue::U16(*x),
        Value::U32(x) => TValue::U32(*x),
        Value::U64(x) => TValue::U64(*x),
        Value::F32(x) => TValue::F32(*x),
        Value::F64(x) => TValue::F64(*x),
        Value::Char(c) => TValue::Char(*c),
        Value::String(s) => TValue::String(s.clone()),
        Value::Enum(e) => TValue::Enum(kebab(e)),
        Value::Flags(f) => TValue::Flags(f.iter().map(|n| kebab(n)).collect()),
        other => TValue::String(format!("<unconverted {other:?}>")),
    }
}
