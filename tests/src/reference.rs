//! The reference runner: wasmtime 48's component runtime running a fixture
//! component, the yardstick every lowering is judged against.
//!
//! Owns: instantiating a component with WASI preview 2 (captured stdout and
//! stderr, fixed args and env, a preopened temporary directory) and the
//! custom host imports of [`crate::host`]; turning invocations into calls
//! with arguments parsed by `wasm-wave` at the parameter types; recording
//! results, traps, exits and effects. A trap or exit ends the instance: the
//! next invocation runs in a fresh one, with the handles bound so far gone.
//!
//! The WASI environment every fixture sees:
//! - args: `fixture --flag value`;
//! - env: `KARMEM_FIXTURE=yes`, `GREETING=hello from the host`;
//! - `/sandbox`: a read-write directory holding `input.txt` (see
//!   [`SANDBOX_INPUT`]); files created or changed there are effects.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Instance, Linker, ResourceAny, ResourceTable, Val};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxView, WasiView};

use crate::harness::{Completion, Effect, Outcome, Runner};
use crate::host::{HasHostState, HostState, define_custom_imports, wasmtime_result};
use crate::invocation::{Action, Arg, Call, Invocation, parse_string_literal};
use crate::value::Value;

/// Arguments every fixture gets (`args[0]` included).
pub const FIXTURE_ARGS: [&str; 3] = ["fixture", "--flag", "value"];
/// Environment every fixture gets.
pub const FIXTURE_ENV: [(&str, &str); 2] = [
    ("KARMEM_FIXTURE", "yes"),
    ("GREETING", "hello from the host"),
];
/// Where the sandbox directory is preopened in the guest.
pub const SANDBOX_GUEST_PATH: &str = "/sandbox";
/// The contents of `/sandbox/input.txt`.
pub const SANDBOX_INPUT: &str = "first line\nsecond line\n";

/// Most bytes of stdout or stderr kept per instance.
const PIPE_CAPACITY: usize = 16 << 20;

/// The engine shared by every reference runner in the process.
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(Engine::default)
}

/// Store data: WASI state and the custom host imports' state.
struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    host: HostState,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HasHostState for State {
    fn host(&mut self) -> &mut HostState {
        &mut self.host
    }
}

/// One live instance with its store and output pipes.
struct Live {
    store: Store<State>,
    instance: Instance,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    stdout_seen: usize,
    stderr_seen: usize,
    handles: HashMap<String, ResourceAny>,
}

/// Runs invocations against one component on wasmtime.
pub struct ReferenceRunner {
    component: Component,
    linker: Linker<State>,
    sandbox: tempfile::TempDir,
    /// Sandbox contents after the previous invocation.
    sandbox_files: BTreeMap<String, Vec<u8>>,
    live: Option<Live>,
    /// Names of the component's exports, for resolving unversioned names.
    export_names: Vec<String>,
}

impl std::fmt::Debug for ReferenceRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceRunner")
            .field("sandbox", &self.sandbox.path())
            .finish_non_exhaustive()
    }
}

impl ReferenceRunner {
    /// Compiles `bytes` (a component, binary or WAT text) and links it.
    pub fn new(bytes: &[u8]) -> Result<Self> {
        let engine = engine();
        let component =
            wasmtime_result(Component::new(engine, bytes)).context("compiling the component")?;
        let mut linker = Linker::new(engine);
        wasmtime_result(wasmtime_wasi::p2::add_to_linker_sync(&mut linker))
            .context("linking WASI")?;
        define_custom_imports(&mut linker, engine, &component.component_type())?;
        let sandbox = tempfile::tempdir().context("creating the sandbox directory")?;
        std::fs::write(sandbox.path().join("input.txt"), SANDBOX_INPUT)
            .context("writing `input.txt`")?;
        let sandbox_files = read_dir_files(sandbox.path())?;
        let export_names = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_owned())
            .collect();
        Ok(Self {
            component,
            linker,
            sandbox,
            sandbox_files,
            live: None,
            export_names,
        })
    }

    /// Links the WASI interfaces the runner does not serve (those outside
    /// preview 2's `wasi:cli`, `io`, `clocks`, `filesystem`, `random` and
    /// `sockets`, such as `wasi:http`) to functions that trap when called: for
    /// toolchains whose output imports interfaces the program never uses
    /// (StarlingMonkey imports `wasi:http`). A call to one is a trap in the
    /// transcript.
    pub fn trapping_unknown_imports(mut self) -> Result<Self> {
        let engine = engine();
        let component_type = self.component.component_type();
        for (name, item) in component_type.imports(engine) {
            let package = name.split_once('/').map_or(name, |(package, _)| package);
            if !package.starts_with("wasi:") || SERVED_WASI.contains(&package) {
                continue;
            }
            let ComponentItem::ComponentInstance(instance) = item.ty else {
                bail!("cannot stub the import `{name}`: not an instance");
            };
            let mut linker = wasmtime_result(self.linker.instance(name))
                .with_context(|| format!("stubbing `{name}`"))?;
            for (export, item) in instance.exports(engine) {
                match item.ty {
                    ComponentItem::ComponentFunc(_) => {
                        let what = format!("{name}#{export}");
                        wasmtime_result(linker.func_new(export, move |_, _, _, _| {
                            wasmtime::bail!("`{what}` is not available on the reference runner")
                        }))
                    }
                    ComponentItem::Resource(resource) => {
                        let host = served_resource(engine, &component_type, resource)
                            .unwrap_or_else(wasmtime::component::ResourceType::host::<()>);
                        wasmtime_result(linker.resource(export, host, |_, _| Ok(())))
                    }
                    _ => Ok(()),
                }
                .with_context(|| format!("stubbing `{name}#{export}`"))?;
            }
        }
        Ok(self)
    }

    /// Reads and compiles a component file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading `{}`", path.display()))?;
        Self::new(&bytes).with_context(|| format!("loading `{}`", path.display()))
    }

    fn instantiate(&mut self) -> Result<Live> {
        let stdout = MemoryOutputPipe::new(PIPE_CAPACITY);
        let stderr = MemoryOutputPipe::new(PIPE_CAPACITY);
        let mut builder = WasiCtx::builder();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&FIXTURE_ARGS)
            .envs(&FIXTURE_ENV)
            .preopened_dir(self.sandbox.path(), SANDBOX_GUEST_PATH, FsPerms::ReadWrite)
            .map_err(anyhow::Error::from)
            .context("preopening the sandbox")?;
        let state = State {
            wasi: builder.build(),
            table: ResourceTable::new(),
            host: HostState::default(),
        };
        let mut store = Store::new(engine(), state);
        let instance = wasmtime_result(self.linker.instantiate(&mut store, &self.component))
            .context("instantiating")?;
        Ok(Live {
            store,
            instance,
            stdout,
            stderr,
            stdout_seen: 0,
            stderr_seen: 0,
            handles: HashMap::new(),
        })
    }

    /// Takes the effects observed since the last call: host calls, new
    /// output, changed files.
    fn take_effects(&mut self, live: &mut Live) -> Result<Vec<Effect>> {
        let mut effects = std::mem::take(&mut live.store.data_mut().host.effects);
        if let Some(text) = new_output(&live.stdout, &mut live.stdout_seen) {
            effects.push(Effect::Stdout(text));
        }
        if let Some(text) = new_output(&live.stderr, &mut live.stderr_seen) {
            effects.push(Effect::Stderr(text));
        }
        let files = read_dir_files(self.sandbox.path())?;
        for (path, contents) in &files {
            if self.sandbox_files.get(path) != Some(contents) {
                let contents = String::from_utf8_lossy(contents).into_owned();
                effects.push(Effect::File {
                    path: format!("{SANDBOX_GUEST_PATH}/{path}"),
                    contents,
                });
            }
        }
        self.sandbox_files = files;
        Ok(effects)
    }

    /// The exported name `interface` refers to: itself, or if it has no
    /// version and the component exports no such name, the one export
    /// `interface@<version>`.
    fn resolve_interface<'a>(&'a self, interface: &'a str) -> Result<&'a str> {
        if interface.contains('@') || self.export_names.iter().any(|name| name == interface) {
            return Ok(interface);
        }
        let prefix = format!("{interface}@");
        let mut matches = self
            .export_names
            .iter()
            .filter(|name| name.starts_with(&prefix));
        match (matches.next(), matches.next()) {
            (Some(name), None) => Ok(name),
            (Some(_), Some(_)) => bail!("`{interface}` is exported in several versions; name one"),
            (None, _) => bail!("the component exports no `{interface}`"),
        }
    }

    fn call(&mut self, live: &mut Live, call: &Call) -> Result<Completion> {
        let interface = call
            .interface
            .as_deref()
            .map(|i| self.resolve_interface(i))
            .transpose()?;
        let func = find_func(live, interface, call)?;
        let ty = func.ty(&live.store);
        let param_types: Vec<_> = ty.params().collect();
        if param_types.len() != call.args.len() {
            bail!(
                "`{}` takes {} arguments, found {}",
                call.qualified_name(),
                param_types.len(),
                call.args.len()
            );
        }
        let mut params = Vec::with_capacity(call.args.len());
        for ((name, param_type), arg) in param_types.iter().zip(&call.args) {
            let value = match arg {
                Arg::Wave(text) => parse_wave_arg(param_type, text)
                    .with_context(|| format!("parsing the argument `{name}`"))?,
                Arg::Handle(handle) => Val::Resource(
                    *live
                        .handles
                        .get(handle)
                        .with_context(|| format!("no handle bound to `${handle}`"))?,
                ),
            };
            params.push(value);
        }
        let mut results = vec![Val::Bool(false); ty.results().len()];
        if let Err(error) = func.call(&mut live.store, &params, &mut results) {
            return Ok(failure(&error));
        }
        let mut bound = false;
        let values = results
            .iter()
            .map(|result| {
                value_from_val(result, &mut |handle| match &call.bind {
                    Some(name) if !bound => {
                        bound = true;
                        live.handles.insert(name.clone(), handle);
                        format!("${name}")
                    }
                    _ => if handle.owned() { "own" } else { "borrow" }.to_owned(),
                })
            })
            .collect();
        if let (Some(name), false) = (&call.bind, bound) {
            bail!(
                "`${name} =` but `{}` returned no handle",
                call.qualified_name()
            );
        }
        Ok(Completion::Returned(values))
    }
}

/// WASI packages wasmtime-wasi's preview 2 linker serves.
const SERVED_WASI: [&str; 6] = [
    "wasi:cli",
    "wasi:io",
    "wasi:clocks",
    "wasi:filesystem",
    "wasi:random",
    "wasi:sockets",
];

/// The host type wasmtime-wasi gives `resource` when it is one of the
/// `wasi:io` resources the component imports (a stubbed interface `use`s them,
/// and its stub must name the same type), else `None`.
fn served_resource(
    engine: &Engine,
    component_type: &wasmtime::component::types::Component,
    resource: wasmtime::component::ResourceType,
) -> Option<wasmtime::component::ResourceType> {
    use wasmtime::component::ResourceType;
    use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, IoError};
    component_type
        .imports(engine)
        .find_map(|(interface, item)| {
            let ComponentItem::ComponentInstance(instance) = item.ty else {
                return None;
            };
            let unversioned = interface
                .split_once('@')
                .map_or(interface, |(name, _)| name);
            instance
                .exports(engine)
                .find_map(|(name, item)| match item.ty {
                    ComponentItem::Resource(ty) if ty == resource => match (unversioned, name) {
                        ("wasi:io/poll", "pollable") => Some(ResourceType::host::<DynPollable>()),
                        ("wasi:io/streams", "input-stream") => {
                            Some(ResourceType::host::<DynInputStream>())
                        }
                        ("wasi:io/streams", "output-stream") => {
                            Some(ResourceType::host::<DynOutputStream>())
                        }
                        ("wasi:io/error", "error") => Some(ResourceType::host::<IoError>()),
                        _ => None,
                    },
                    _ => None,
                })
        })
}

/// Parses one WAVE argument at its parameter type into a wasmtime value.
/// Plain string literals are read directly (see [`parse_string_literal`]):
/// `Val::from_wave` overflows a test thread's stack on a few hundred KiB.
/// Other wasmtime-based runners should use this too.
pub fn parse_wave_arg(ty: &wasmtime::component::Type, text: &str) -> Result<Val> {
    if let wasmtime::component::Type::String = ty
        && let Some(value) = parse_string_literal(text)
    {
        return Ok(Val::String(value));
    }
    wasmtime_result(Val::from_wave(ty, text))
}

/// How a failed call ends: a WASI exit or a trap.
fn failure(error: &wasmtime::Error) -> Completion {
    match error.downcast_ref::<I32Exit>() {
        Some(exit) => Completion::Exited(exit.0),
        None => Completion::Trapped(format!("{error:#}")),
    }
}

fn find_func(
    live: &mut Live,
    interface: Option<&str>,
    call: &Call,
) -> Result<wasmtime::component::Func> {
    let parent = match interface {
        Some(interface) => Some(
            live.instance
                .get_export_index(&mut live.store, None, interface)
                .with_context(|| format!("the component exports no `{interface}`"))?,
        ),
        None => None,
    };
    let index = live
        .instance
        .get_export_index(&mut live.store, parent.as_ref(), &call.function)
        .with_context(|| {
            format!(
                "the component exports no function `{}`",
                call.qualified_name()
            )
        })?;
    live.instance
        .get_func(&mut live.store, index)
        .with_context(|| format!("`{}` is not a function", call.qualified_name()))
}

impl Runner for ReferenceRunner {
    fn invoke(&mut self, invocation: &Invocation) -> Result<Outcome> {
        let mut live = match self.live.take() {
            Some(live) => live,
            None => self.instantiate()?,
        };
        let completion = match &invocation.action {
            Action::Call(call) => self.call(&mut live, call)?,
            Action::Drop(name) => {
                let handle = live
                    .handles
                    .remove(name)
                    .with_context(|| format!("no handle bound to `${name}`"))?;
                match handle.resource_drop(&mut live.store) {
                    Ok(()) => Completion::Returned(Vec::new()),
                    Err(error) => failure(&error),
                }
            }
        };
        let effects = self.take_effects(&mut live)?;
        // A trapped or exited instance cannot be entered again.
        if matches!(completion, Completion::Returned(_)) {
            self.live = Some(live);
        }
        Ok(Outcome {
            completion,
            effects,
        })
    }
}

fn new_output(pipe: &MemoryOutputPipe, seen: &mut usize) -> Option<String> {
    let contents = pipe.contents();
    let fresh = contents.get(*seen..)?;
    if fresh.is_empty() {
        return None;
    }
    *seen = contents.len();
    Some(String::from_utf8_lossy(fresh).into_owned())
}

/// Every regular file under `dir`, by path relative to it.
fn read_dir_files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)
            .with_context(|| format!("listing `{}`", current.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                let contents = std::fs::read(&path)
                    .with_context(|| format!("reading `{}`", path.display()))?;
                files.insert(relative, contents);
            }
        }
    }
    Ok(files)
}

/// Converts a wasmtime value to a [`Value`]; `handle` names each resource
/// handle met (in pre-order).
pub fn value_from_val(val: &Val, handle: &mut dyn FnMut(ResourceAny) -> String) -> Value {
    let boxed = |inner: &Option<Box<Val>>, handle: &mut dyn FnMut(ResourceAny) -> String| {
        inner.as_ref().map(|v| Box::new(value_from_val(v, handle)))
    };
    match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(n) => Value::S8(*n),
        Val::U8(n) => Value::U8(*n),
        Val::S16(n) => Value::S16(*n),
        Val::U16(n) => Value::U16(*n),
        Val::S32(n) => Value::S32(*n),
        Val::U32(n) => Value::U32(*n),
        Val::S64(n) => Value::S64(*n),
        Val::U64(n) => Value::U64(*n),
        Val::Float32(x) => Value::F32(*x),
        Val::Float64(x) => Value::F64(*x),
        Val::Char(c) => Value::Char(*c),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) | Val::FixedLengthList(items) => {
            Value::List(items.iter().map(|v| value_from_val(v, handle)).collect())
        }
        Val::Map(entries) => Value::List(
            entries
                .iter()
                .map(|(k, v)| {
                    Value::Tuple(vec![value_from_val(k, handle), value_from_val(v, handle)])
                })
                .collect(),
        ),
        Val::Record(fields) => Value::Record(
            fields
                .iter()
                .map(|(name, v)| (name.clone(), value_from_val(v, handle)))
                .collect(),
        ),
        Val::Tuple(items) => {
            Value::Tuple(items.iter().map(|v| value_from_val(v, handle)).collect())
        }
        Val::Variant(case, payload) => Value::Variant(case.clone(), boxed(payload, handle)),
        Val::Enum(case) => Value::Enum(case.clone()),
        Val::Option(inner) => Value::Option(boxed(inner, handle)),
        Val::Result(Ok(payload)) => Value::Result(Ok(boxed(payload, handle))),
        Val::Result(Err(payload)) => Value::Result(Err(boxed(payload, handle))),
        Val::Flags(names) => Value::Flags(names.clone()),
        Val::Resource(resource) => Value::Handle(handle(*resource)),
        Val::Future(_) => Value::Handle("future".to_owned()),
        Val::Stream(_) => Value::Handle("stream".to_owned()),
        Val::ErrorContext(_) => Value::Handle("error-context".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::component::Val;
    use wasmtime::component::wasm_wave;

    use super::value_from_val;

    /// Our WAVE writer must print what `wasm-wave` prints, so that runners
    /// that print through either agree.
    #[test]
    fn wave_text_matches_wasm_wave() -> anyhow::Result<()> {
        let boxed = |v: Val| Some(Box::new(v));
        let values = [
            Val::Float32(-0.0),
            Val::Float64(1e300),
            Val::Float64(f64::NEG_INFINITY),
            Val::Float32(f32::NAN),
            Val::Char('\''),
            Val::Char('\u{7f}'),
            Val::String("tab\t \"q\" \\ \u{0} é 🦀 \u{200b}".into()),
            Val::List(vec![Val::U8(0), Val::U8(255)]),
            Val::Record(vec![
                ("ok".into(), Val::Option(None)),
                ("inf".into(), Val::Option(boxed(Val::S64(i64::MIN)))),
                (
                    "n".into(),
                    Val::Tuple(vec![Val::Bool(true), Val::U64(u64::MAX)]),
                ),
            ]),
            Val::Record(vec![("gone".into(), Val::Option(None))]),
            Val::Variant("none".into(), None),
            Val::Variant("circle".into(), boxed(Val::Float32(1.5))),
            Val::Enum("true".into()),
            Val::Result(Ok(None)),
            Val::Result(Err(boxed(Val::String("bad".into())))),
            Val::Flags(vec!["read".into(), "b31".into()]),
            Val::Flags(vec![]),
        ];
        for val in &values {
            let ours = value_from_val(val, &mut |_| "handle".to_owned()).to_wave();
            let theirs = wasm_wave::to_string(val)?;
            assert_eq!(ours, theirs, "for {val:?}");
        }
        Ok(())
    }
}
