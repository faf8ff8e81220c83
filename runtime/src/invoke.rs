//! Running one lowered module with WASI: a [`Session`] (the runtime's one
//! instance type, [`Guest`], under the name its callers know) instantiates it with
//! `wasi_snapshot_preview1` served by `wasmtime_wasi::p1`, serves its
//! `karmem:*` imports from host functions registered per interface
//! ([`HostFunctions`]), from other sessions' exports ([`SessionOptions::links`],
//! the direct pattern) or from guests wired by pattern
//! ([`crate::compose::Composition`]), runs the handshake
//! ([`crate::handshake`]), and calls exports with `Value`s (docs/ABI.md §3) or
//! runs `_start`.
//!
//! Interface memories (docs/ABI.md §6): a module whose schema declares any is
//! loaded with the bulk-memory rewrite ([`crate::bulk`]), so shared windows
//! with any access can be mapped into it after the handshake has reported
//! their offsets ([`Session::map_shared`]). Every host access to a session's
//! memory is checked against its windows: a write aimed at a read-only window
//! is an error, never a fault. An import whose argument message lies in a
//! shared window reaches the serving guest in place when that guest maps the
//! same region ([`Message::InRegion`]): no copy.
//!
//! Owns: loading a module with its ABI sections ([`SessionModule`]), the
//! WASI context, serving `karmem:*` imports, the handshake at
//! instantiation, value and message calls, checking links. Leaves to
//! [`crate::guest`] the store, calls, poisoning, deadlines, memory access
//! and shared mapping (one implementation for every guest), and to
//! [`crate::compose`] which guest serves which import and who shares which
//! region.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use karmem_contract::{ABI_SECTION, MESSAGE_ALIGN, RESOURCE_DROP, entry};
use karmem_format::layout::Layout;
use karmem_format::{Limits, Value};
use wasmtime::{Caller, Extern, Linker, Val, ValType};

use crate::WasmtimeResultExt;
use crate::compose::Identity;
use crate::guest::{Guest, GuestLimits, GuestState, caller_memory, check_range, guarded_read, guarded_write};
use crate::handshake::{self, ModuleAbi};
use crate::link::{GuestInterfaces, InterfaceInfo, Pattern};
use crate::runtime::{LoadedModule, Runtime};
use crate::shared::{MemoryLayout, SharedRegion};

/// A guest instantiated with the Karmem ABI and WASI: [`Guest`] itself, the
/// name the CLI, the tests and the docs use for this face of it.
pub type Session = Guest;

/// A host implementation of one imported function: the decoded argument
/// struct in, the result struct out (an empty record for no results).
pub type HostFn = Arc<dyn Fn(&Value) -> Result<Value> + Send + Sync>;

/// A host implementation of the drop of a host-defined resource: the
/// guest's owned handle (the host's own number) in.
pub type HostDrop = Arc<dyn Fn(i32) -> Result<()> + Send + Sync>;

/// Host functions registered per interface, by KarmemIDL names.
#[derive(Clone, Default)]
pub struct HostFunctions {
    functions: BTreeMap<(String, String), HostFn>,
    /// Drops of host-defined resources, by interface and import field
    /// (`[resource-drop]<resource>`).
    drops: BTreeMap<(String, String), HostDrop>,
}

impl fmt::Debug for HostFunctions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.functions.keys().chain(self.drops.keys())).finish()
    }
}

impl HostFunctions {
    /// Serves `interface.function` with `host`.
    pub fn register(&mut self, interface: &str, function: &str, host: HostFn) {
        self.functions
            .insert((interface.to_string(), function.to_string()), host);
    }

    /// Serves the drop of the host-defined `resource` of `interface` (the
    /// core import `karmem:<interface>`/`[resource-drop]<resource>`) with
    /// `host`; it takes precedence over linked guests.
    pub fn register_drop(&mut self, interface: &str, resource: &str, host: HostDrop) {
        self.drops
            .insert((interface.to_string(), format!("{RESOURCE_DROP}{resource}")), host);
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
    /// Host functions for `karmem:*` imports; they take precedence over
    /// linked guests.
    pub hosts: HostFunctions,
    /// Sessions whose exported interfaces serve this one's imports of the
    /// same name (direct pattern, no shared memories), checked by type hash;
    /// used by [`Session::new`] and [`Session::from_module`].
    /// [`crate::compose::Composition`] ignores them: it wires by every
    /// pattern from its registered modules.
    pub links: Vec<LinkedSession>,
}

/// A session shared as the exporter side of a link.
pub type LinkedSession = Arc<Mutex<Session>>;

/// Where the argument message of a call served by another guest lies.
#[derive(Debug, Clone, Copy)]
pub enum Message<'a> {
    /// Bytes copied out of the caller.
    Bytes(&'a [u8]),
    /// In place in a shared region: `len` bytes at `offset` from the
    /// region's start. A guest that maps the region reads it there.
    InRegion {
        /// The region.
        region: &'a Arc<SharedRegion>,
        /// Byte offset in the region.
        offset: u64,
        /// Message length.
        len: u32,
    },
}

/// Serves the imports of one interface from other guests (by pattern:
/// [`crate::compose`]).
pub trait Route: Send + Sync {
    /// Calls `function` of the interface (the importer's name for it) with
    /// the argument message; returns a copy of the result message for the
    /// importer.
    fn call(&self, function: &str, message: &Message<'_>) -> Result<Vec<u8>>;

    /// Drops the importer's owned `handle` of a resource of the interface
    /// (the core import `[resource-drop]<resource>`, docs/ABI.md §4): the
    /// exporter instance that made the handle drops it. Handles cross
    /// messages unchanged, so `handle` is that instance's own number.
    fn drop_resource(&self, field: &str, handle: i32) -> Result<()> {
        let _ = handle;
        bail!("`{field}` cannot be served by this route")
    }
}

/// The direct route of [`SessionOptions::links`]: one shared session.
struct LinkRoute {
    /// The exporter's name of the interface.
    export: String,
    session: LinkedSession,
}

impl Route for LinkRoute {
    fn call(&self, function: &str, message: &Message<'_>) -> Result<Vec<u8>> {
        let mut exporter = self
            .session
            .lock()
            .map_err(|_| anyhow!("a linked module's lock was poisoned"))?;
        exporter
            .call_message(&self.export, function, message)
            .context("the linked module failed")
    }

    fn drop_resource(&self, field: &str, handle: i32) -> Result<()> {
        let mut exporter = self
            .session
            .lock()
            .map_err(|_| anyhow!("a linked module's lock was poisoned"))?;
        exporter.drop_handle(&self.export, field, handle)
    }
}

/// A lowered module compiled for sessions: its ABI sections and the
/// compiled code, ready to be instantiated any number of times.
#[derive(Debug, Clone)]
pub struct SessionModule {
    abi: Option<Arc<ModuleAbi>>,
    module: LoadedModule,
}

impl SessionModule {
    /// Reads the module's ABI sections and loads it through the runtime (and
    /// its cache). A module whose schema declares interface memories is
    /// loaded with the bulk-memory rewrite, so it can take protected windows.
    pub fn load(runtime: &Runtime, bytes: &[u8]) -> Result<Self> {
        let abi = match ModuleAbi::from_module_bytes(bytes) {
            Ok(abi) => Some(Arc::new(abi)),
            Err(error) if has_section(bytes, ABI_SECTION) || is_component(bytes) => {
                return Err(error);
            }
            Err(_) => None,
        };
        let memories = abi
            .as_ref()
            .is_some_and(|abi| schema_has_memories(&abi.schema));
        let module = if memories {
            runtime.load_with_bulk_rewrite(bytes)
        } else {
            runtime.load(bytes)
        }
        .context("failed to load the module")?;
        Ok(SessionModule { abi, module })
    }

    /// The module's ABI sections (`None` for a plain WASI module).
    pub fn abi(&self) -> Option<&ModuleAbi> {
        self.abi.as_deref()
    }

    pub(crate) fn abi_arc(&self) -> Option<Arc<ModuleAbi>> {
        self.abi.clone()
    }

    /// The compiled module.
    pub fn loaded(&self) -> &LoadedModule {
        &self.module
    }

    /// Interfaces the module imports (`karmem:<interface>` import modules),
    /// in import order.
    pub fn imported_interfaces(&self) -> Vec<String> {
        self.imported_functions()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// Interfaces the module exports (`<interface>.<function>` exports), in
    /// export order.
    pub fn exported_interfaces(&self) -> Vec<String> {
        self.exported_functions()
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    /// Imported interfaces with their message functions (not the
    /// `[resource-drop]` imports), in import order.
    pub fn imported_functions(&self) -> Vec<(String, Vec<String>)> {
        let mut found: Vec<(String, Vec<String>)> = Vec::new();
        for import in self.module.module().imports() {
            if let Some(name) = karmem_contract::imported_interface(import.module()) {
                push_function(&mut found, name, import.name());
            }
        }
        found
    }

    /// Exported interfaces with their functions, in export order.
    pub fn exported_functions(&self) -> Vec<(String, Vec<String>)> {
        let mut found: Vec<(String, Vec<String>)> = Vec::new();
        for export in self.module.module().exports() {
            if export.ty().func().is_none() {
                continue;
            }
            if let Some((name, function)) = export.name().split_once('.') {
                push_function(&mut found, name, function);
            }
        }
        found
    }

    /// The `[resource-drop]<resource>` imports of `interface`.
    pub fn resource_drops(&self, interface: &str) -> Vec<String> {
        resource_drops(self.module.module(), interface)
    }

    /// The pattern the module's schema declares for `interface`
    /// (`pool_size` instances for `pool`, the host's choice).
    pub fn declared_pattern(
        &self,
        interface: &str,
        pool_size: std::num::NonZeroUsize,
    ) -> Option<Pattern> {
        let abi = self.abi.as_ref()?;
        match abi.schema.get(interface)? {
            karmem_idl::ast::Item::Interface(def) => Some(Pattern::declared(def.pattern, pool_size)),
            _ => None,
        }
    }
}

fn resource_drops(module: &wasmtime::Module, interface: &str) -> Vec<String> {
    let karmem = karmem_contract::import_module(interface);
    module
        .imports()
        .filter(|i| i.module() == karmem && i.name().starts_with(RESOURCE_DROP))
        .map(|i| i.name().to_string())
        .collect()
}

fn push_function(found: &mut Vec<(String, Vec<String>)>, interface: &str, function: &str) {
    let index = match found.iter().position(|(name, _)| name == interface) {
        Some(index) => index,
        None => {
            found.push((interface.to_string(), Vec::new()));
            found.len() - 1
        }
    };
    if !function.starts_with(RESOURCE_DROP)
        && let Some((_, functions)) = found.get_mut(index)
    {
        functions.push(function.to_string());
    }
}

fn schema_has_memories(schema: &karmem_idl::Schema) -> bool {
    schema.file().items.iter().any(|item| match item {
        karmem_idl::ast::Item::Interface(def) => def.memories().next().is_some(),
        _ => false,
    })
}

/// What serves one `karmem:*` import.
#[derive(Clone)]
enum Server {
    Host(HostFn),
    Route(Arc<dyn Route>),
    Missing,
}

/// The Karmem ABI and WASI face of a guest.
impl Guest {
    /// Instantiates the lowered module `bytes` and, when it has the Karmem
    /// ABI, runs the handshake and checks every type hash against its
    /// `karmem:idl` schema. A module without the Karmem ABI (a plain WASI
    /// command) can still run `_start`.
    pub fn new(runtime: &Runtime, bytes: &[u8], options: &SessionOptions) -> Result<Session> {
        let module = SessionModule::load(runtime, bytes)?;
        Session::from_module(runtime, &module, options)
    }

    /// [`Session::new`] for a module loaded before.
    pub fn from_module(
        runtime: &Runtime,
        module: &SessionModule,
        options: &SessionOptions,
    ) -> Result<Session> {
        let mut routes: BTreeMap<String, Arc<dyn Route>> = BTreeMap::new();
        let mut linked: BTreeMap<String, Vec<LinkedSession>> = BTreeMap::new();
        let mut exports: BTreeMap<String, String> = BTreeMap::new();
        for interface in module.imported_interfaces() {
            let identity = Identity::of(module.abi(), &interface);
            if let Some((link, export)) = find_link(&options.links, &interface, &identity)? {
                let route = LinkRoute {
                    export: export.clone(),
                    session: Arc::clone(&link),
                };
                routes.insert(interface.clone(), Arc::new(route));
                linked.insert(interface.clone(), vec![link]);
                exports.insert(interface, export);
            }
        }
        let mut session = Session::instantiate_served(runtime, module, options, &routes)?;
        for (interface, sessions) in linked {
            let export = exports.get(&interface).cloned().unwrap_or_default();
            for link in &sessions {
                session.check_link(&interface, None, link, &export)?;
            }
            session.linked.insert(interface, sessions);
        }
        Ok(session)
    }

    /// Instantiates `module` with its `karmem:*` imports served by host
    /// functions first, then `routes` (by interface); runs the handshake.
    pub(crate) fn instantiate_served(
        runtime: &Runtime,
        module: &SessionModule,
        options: &SessionOptions,
        routes: &BTreeMap<String, Arc<dyn Route>>,
    ) -> Result<Session> {
        let abi = module.abi.clone();
        let loaded = &module.module;
        let mut linker: Linker<GuestState> = runtime.linker();
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, GuestState::wasi)
        .into_anyhow()
        .context("failed to add WASI preview1 to the linker")?;
        for import in loaded.module().imports() {
            let (module_name, field) = (import.module().to_string(), import.name().to_string());
            let Some(interface) = karmem_contract::imported_interface(&module_name) else {
                continue;
            };
            let ty =
                import.ty().func().cloned().with_context(|| {
                    format!("import `{module_name}`/`{field}` is not a function")
                })?;
            let server = match options
                .hosts
                .functions
                .get(&(interface.to_string(), field.clone()))
            {
                Some(host) => Server::Host(Arc::clone(host)),
                None => match routes.get(interface) {
                    Some(route) => Server::Route(Arc::clone(route)),
                    None => Server::Missing,
                },
            };
            let drop_shape =
                ty.params().map(|p| p.is_i32()).eq([true]) && ty.results().next().is_none();
            if let (true, Some(host)) = (
                drop_shape,
                options.hosts.drops.get(&(interface.to_string(), field.clone())),
            ) {
                let host = Arc::clone(host);
                let what = format!("import `{module_name}`/`{field}`");
                linker
                    .func_new(&module_name, &field.clone(), ty, move |_, params, _| match params {
                        [Val::I32(handle)] => host(*handle)
                            .map_err(|error| wasmtime::Error::msg(format!("{what}: {error:#}"))),
                        _ => Err(wasmtime::Error::msg(format!("{what}: expected `(handle: i32)`"))),
                    })
                    .into_anyhow()?;
                continue;
            }
            if let (true, true, Some(route)) = (
                drop_shape,
                field.starts_with(RESOURCE_DROP),
                routes.get(interface),
            ) {
                let route = Arc::clone(route);
                let what = format!("import `{module_name}`/`{field}`");
                let field = field.clone();
                linker
                    .func_new(&module_name, &field.clone(), ty, move |_, params, _| {
                        let handle = match params {
                            [Val::I32(handle)] => *handle,
                            _ => {
                                return Err(wasmtime::Error::msg(format!(
                                    "{what}: expected `(handle: i32)`"
                                )));
                            }
                        };
                        route
                            .drop_resource(&field, handle)
                            .map_err(|error| wasmtime::Error::msg(format!("{what}: {error:#}")))
                    })
                    .into_anyhow()?;
                continue;
            }
            let karmem_shape = ty.params().map(|p| p.is_i32()).eq([true, true])
                && ty.results().map(|r| matches!(r, ValType::I64)).eq([true]);
            if !karmem_shape || matches!(server, Server::Missing) {
                let what = format!("import `{module_name}`/`{field}`");
                let why = if karmem_shape {
                    "is not served (no host function and no linked module exports it)"
                } else if field.starts_with(RESOURCE_DROP) {
                    "is not served (no linked module exports the resource's interface)"
                } else {
                    "is not served (only Karmem ABI message functions and resource drops are)"
                };
                linker
                    .func_new(&module_name, &field, ty, move |_, _, _| {
                        Err(wasmtime::Error::msg(format!("{what} {why}")))
                    })
                    .into_anyhow()?;
                continue;
            }
            let abi = abi
                .clone()
                .context("a module with `karmem:*` imports has no Karmem ABI sections")?;
            let (iface, function) = (interface.to_string(), field.clone());
            linker
                .func_new(
                    &module_name,
                    &field,
                    ty,
                    move |mut caller, params, results| match serve_import(
                        &mut caller,
                        &abi.layout,
                        &server,
                        &iface,
                        &function,
                        params,
                    ) {
                        Ok(packed) => {
                            if let Some(slot) = results.first_mut() {
                                *slot = Val::I64(packed);
                            }
                            Ok(())
                        }
                        Err(error) => Err(wasmtime::Error::msg(format!(
                            "import `{}`/`{function}`: {error:#}",
                            karmem_contract::import_module(&iface)
                        ))),
                    },
                )
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
        let limits = GuestLimits {
            timeout: options.timeout,
            fuel: None,
            max_memory_bytes: options.max_memory_bytes,
        };
        let mut session = Guest::create(
            runtime,
            &linker,
            loaded,
            &MemoryLayout::empty(),
            &limits,
            Some(wasi.build_p1()),
        )?;
        // a session exchanges messages: it needs a message memory
        session.memory_size()?;
        session.abi = abi;
        if let Some(abi) = session.abi.clone() {
            let interfaces =
                handshake::discover(&mut session).context("the Karmem handshake failed")?;
            handshake::check_type_hashes(&interfaces, &abi.layout)?;
            session.interfaces = interfaces;
        }
        Ok(session)
    }

    /// The interfaces the handshake found (empty without the Karmem ABI).
    pub fn interfaces(&self) -> &GuestInterfaces {
        &self.interfaces
    }

    /// The imported interface `name`, as the handshake found it.
    pub fn imported(&self, name: &str) -> Option<&InterfaceInfo> {
        self.interfaces.imports.iter().find(|i| i.name == name)
    }

    /// The exported interface `name`, as the handshake found it.
    pub fn exported(&self, name: &str) -> Option<&InterfaceInfo> {
        self.interfaces.exports.iter().find(|i| i.name == name)
    }

    /// The module's schema (`None` without the Karmem ABI).
    pub fn abi(&self) -> Option<&ModuleAbi> {
        self.abi.as_deref()
    }

    /// The sessions serving imported interface `name` (direct: one,
    /// fanout: every exporter in order, singleton: the shared one; empty for
    /// a pool, host functions or an unserved import).
    pub fn exporters(&self, name: &str) -> Vec<LinkedSession> {
        self.linked.get(name).cloned().unwrap_or_default()
    }

    pub(crate) fn set_exporters(&mut self, name: &str, sessions: Vec<LinkedSession>) {
        self.linked.insert(name.to_string(), sessions);
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
                let by_qualified = written.rsplit_once('.').is_some_and(|(i, f)| {
                    i == interface.name
                        && (f == function.name || karmem_format::wave::kebab(&function.name) == f)
                });
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
                    .flat_map(|i| {
                        i.functions
                            .iter()
                            .map(move |f| format!("`{}.{}`", i.name, f.name))
                    })
                    .collect();
                bail!(
                    "the module exports no function `{written}` (it exports {})",
                    if all.is_empty() {
                        "none".to_string()
                    } else {
                        all.join(", ")
                    }
                )
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
        let len =
            i32::try_from(message.len()).context("the argument message is larger than 2 GiB")?;
        let ptr = if message.is_empty() {
            0
        } else {
            let ptr = self.call_i32(entry::ALLOC, &[Val::I32(len), Val::I32(MESSAGE_ALIGN)])?;
            self.write_memory(u64::from(ptr as u32), message).with_context(|| {
                format!("cannot copy the argument message into the buffer `{}` returned", entry::ALLOC)
            })?;
            ptr
        };
        let result = self.call_at(interface, function, ptr, len)?;
        if ptr != 0 {
            self.call(entry::FREE, &[Val::I32(ptr), Val::I32(len), Val::I32(MESSAGE_ALIGN)])?;
        }
        Ok(result)
    }

    /// Calls exported `interface.function` with an argument message already
    /// in this guest's memory (in a shared window, say: read in place, no
    /// copy); returns a copy of the result message.
    pub fn call_in_place(
        &mut self,
        interface: &str,
        function: &str,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>> {
        let ptr = u32::try_from(offset).context("the message offset is past 4 GiB")?;
        let len = i32::try_from(len).context("the argument message is larger than 2 GiB")?;
        self.call_at(interface, function, ptr as i32, len)
    }

    /// Calls exported `interface.function` with `message` wherever it lies:
    /// in place when it is in a region this session maps readable, else
    /// copied in.
    pub fn call_message(
        &mut self,
        interface: &str,
        function: &str,
        message: &Message<'_>,
    ) -> Result<Vec<u8>> {
        match *message {
            Message::Bytes(bytes) => self.call_raw(interface, function, bytes),
            Message::InRegion {
                region,
                offset,
                len,
            } => {
                if let Some(window) = self.window_of(region)
                    && window.access.readable()
                {
                    return self.call_in_place(interface, function, window.offset + offset, len);
                }
                let mut bytes = vec![0; len as usize];
                region
                    .read(offset, &mut bytes)
                    .context("cannot read the argument message from its region")?;
                self.call_raw(interface, function, &bytes)
            }
        }
    }

    fn call_at(&mut self, interface: &str, function: &str, ptr: i32, len: i32) -> Result<Vec<u8>> {
        let name = format!("{interface}.{function}");
        let packed = handshake::single_i64(self.call(&name, &[Val::I32(ptr), Val::I32(len)])?, &name)?;
        // `read_packed` checks the length, the guest's word and up to 4 GiB,
        // before it allocates.
        handshake::read_packed(self, packed).with_context(|| format!("result of `{name}`"))
    }

    /// Runs `_start` (a WASI command); returns its exit code (0 when it
    /// returns normally).
    pub fn run_start(&mut self) -> Result<i32> {
        ensure!(
            self.has_export(entry::START),
            "the module has no `_start`: it is not a command (lower a component that exports `wasi:cli/run`)"
        );
        match self.call(entry::START, &[]) {
            Ok(_) => Ok(0),
            Err(error) => match error.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(error),
            },
        }
    }

    fn call_i32(&mut self, name: &str, params: &[Val]) -> Result<i32> {
        match self.call(name, params)?.as_slice() {
            [Val::I32(value)] => Ok(*value),
            _ => bail!("`{name}` did not return one `i32`"),
        }
    }

    /// Checks a link of this session's import `interface` (its `functions`,
    /// importer's name to exporter's, or all of them under their own names)
    /// to `exporter`'s exported interface `export`: every function exported
    /// with the same type hash or a compatible version, every resource the
    /// importer may drop droppable there.
    pub(crate) fn check_link(
        &self,
        interface: &str,
        functions: Option<&BTreeMap<String, String>>,
        exporter: &LinkedSession,
        export: &str,
    ) -> Result<()> {
        let mut exporter = exporter
            .lock()
            .map_err(|_| anyhow!("a linked module's lock was poisoned"))?;
        if let Some(import) = self.imported(interface) {
            check_interface_hashes(self.abi.as_deref(), import, functions, &exporter, export)?;
        }
        if functions.is_none() {
            for field in self.resource_drops(interface) {
                if exporter.drop_export(export, &field).is_none() {
                    bail!(
                        "the linked module exports no `{}` to serve the import `{field}`",
                        exporter.drop_export_name(export, &field)
                    );
                }
            }
        }
        Ok(())
    }

    /// The `[resource-drop]<resource>` imports of `interface`.
    pub(crate) fn resource_drops(&self, interface: &str) -> Vec<String> {
        resource_drops(self.module().module(), interface)
    }

    /// The export that drops this guest's own handles of a resource of its
    /// exported `interface`: `<interface>.[resource-drop]<resource>`
    /// (docs/ABI.md §2), `field` being the importer's
    /// `[resource-drop]<resource>`.
    fn drop_export_name(&self, interface: &str, field: &str) -> String {
        format!("{interface}.{field}")
    }

    fn drop_export(&mut self, interface: &str, field: &str) -> Option<String> {
        let name = self.drop_export_name(interface, field);
        self.has_export(&name).then_some(name)
    }

    /// Drops this guest's own `handle` of a resource of its exported
    /// `interface` (`field` is `[resource-drop]<resource>`), for an importer
    /// that owned it.
    pub fn drop_handle(&mut self, interface: &str, field: &str, handle: i32) -> Result<()> {
        let name = self.drop_export(interface, field).with_context(|| {
            format!(
                "the module has no export `{}`",
                self.drop_export_name(interface, field)
            )
        })?;
        self.call(&name, &[Val::I32(handle)])?;
        Ok(())
    }
}

/// Checks the importer's view of an interface against an exporter's: every
/// imported function must be exported, with the same type hash or, when the
/// hashes differ and both sides carry their `karmem:idl` schema, as a safe
/// evolution of each other by the rules of `karmem-bridge compat`
/// (docs/ABI.md §5): messages of dynamic structs cross such versions.
///
/// `functions` restricts the check to those functions, importer's name to
/// exporter's (a renaming plug); `None` checks every function under its own
/// name. The exporter's interface is `export` (names differ between modules:
/// `test` imported, `test_export` exported).
pub(crate) fn check_interface_hashes(
    importer: Option<&ModuleAbi>,
    import: &InterfaceInfo,
    functions: Option<&BTreeMap<String, String>>,
    exporter: &Session,
    export: &str,
) -> Result<()> {
    let name = &import.name;
    let exported = exporter
        .exported(export)
        .with_context(|| format!("the linked module does not export interface `{export}`"))?;
    for function in &import.functions {
        let theirs_name = match functions {
            None => function.name.as_str(),
            Some(map) => match map.get(&function.name) {
                Some(theirs) => theirs.as_str(),
                None => continue,
            },
        };
        let theirs = exported
            .functions
            .iter()
            .find(|f| f.name == theirs_name)
            .with_context(|| {
                format!("the linked module's `{export}` has no function `{theirs_name}`")
            })?;
        if theirs.type_hash == function.type_hash {
            continue;
        }
        let mismatch = || {
            format!(
                "type hash mismatch for linked function `{name}.{}` (served by `{export}.{theirs_name}`): the importer says {:#018x}, the exporter {:#018x}",
                function.name, function.type_hash, theirs.type_hash
            )
        };
        let (Some(importer), Some(exporter_abi)) = (importer, exporter.abi()) else {
            bail!("{}", mismatch());
        };
        // `compat::check_function` compares one name in both schemas; a
        // renamed link (a plug, or `test` served by `test_export`) is held
        // to equal hashes.
        if (name.as_str(), function.name.as_str()) != (export, theirs_name) {
            bail!(
                "{} (versions of renamed functions must have equal hashes)",
                mismatch()
            );
        }
        karmem_format::compat::check_function(
            &importer.schema,
            &exporter_abi.schema,
            name,
            &function.name,
        )
        .map_err(|e| anyhow!("{}, and the versions are not compatible: {e}", mismatch()))?;
    }
    Ok(())
}

fn decode_results(
    layout: &Layout,
    results: karmem_format::layout::TypeId,
    bytes: &[u8],
) -> Result<Value> {
    if bytes.is_empty()
        && layout
            .as_struct(results)
            .is_some_and(|s| s.fields.is_empty())
    {
        return Ok(Value::Record(Vec::new()));
    }
    karmem_format::value::decode(layout, results, bytes, &Limits::default())
        .map_err(|e| anyhow!("{e}"))
}

/// Decodes a result message of `interface.function` with `layout` (for
/// hosts observing calls between guests).
pub(crate) fn decode_result_message(
    layout: &Layout,
    interface: &str,
    function: &str,
    bytes: &[u8],
) -> Result<Value> {
    let shape = layout
        .function(interface, function)
        .with_context(|| format!("the schema has no function `{interface}.{function}`"))?;
    decode_results(layout, shape.results, bytes)
}

/// The linked session (and its exported interface) serving an import of
/// `identity`: the one whose export fits it (docs/RUNTIME.md, "Linking
/// guests by pattern"); two are ambiguous.
fn find_link(
    links: &[LinkedSession],
    interface: &str,
    identity: &Identity,
) -> Result<Option<(LinkedSession, String)>> {
    let mut found: Vec<(LinkedSession, String)> = Vec::new();
    for link in links {
        let session = link
            .lock()
            .map_err(|_| anyhow!("a linked module's lock was poisoned"))?;
        let abi = session.abi.as_deref();
        if let Some(export) = session
            .interfaces
            .exports
            .iter()
            .find(|e| identity.fits(&Identity::of(abi, &e.name)))
        {
            found.push((Arc::clone(link), export.name.clone()));
        }
    }
    match found.len() {
        0 | 1 => Ok(found.pop()),
        n => bail!(
            "the import `{interface}` (`{identity}`) is ambiguous: {n} linked sessions export it"
        ),
    }
}

/// Serves one `karmem:*` import call. A host function gets the decoded
/// (hence checked: the caller is untrusted) argument struct. A route gets
/// the message in place when it lies in one of the caller's shared windows,
/// else a copy; the serving guest checks it while decoding (docs/ABI.md §7),
/// and the caller checks the result the same way. The result message is
/// written into the caller through its `KarmemAlloc` (§4).
fn serve_import(
    caller: &mut Caller<'_, GuestState>,
    layout: &Layout,
    server: &Server,
    interface: &str,
    function: &str,
    params: &[Val],
) -> Result<i64> {
    let (ptr, len) = match params {
        [Val::I32(ptr), Val::I32(len)] => (u64::from(*ptr as u32), *len as u32),
        _ => bail!("expected `(ptr: i32, len: i32)`"),
    };
    let memory = caller_memory(caller)?;
    let copy_out = |caller: &mut Caller<'_, GuestState>| -> Result<Vec<u8>> {
        // Checked before allocating: the length is the guest's word.
        check_range(&*caller, memory, ptr, u64::from(len))
            .context("the argument message is outside the caller's memory")?;
        let mut message = vec![0; len as usize];
        guarded_read(&mut *caller, memory, ptr, &mut message)
            .context("cannot read the argument message")?;
        Ok(message)
    };
    let result = match server {
        Server::Host(host) => {
            let message = copy_out(caller)?;
            let shape = layout
                .function(interface, function)
                .with_context(|| format!("the schema has no function `{interface}.{function}`"))?;
            let args = decode_results(layout, shape.params, &message)
                .context("invalid argument message")?;
            let value = host(&args)?;
            if layout
                .as_struct(shape.results)
                .is_some_and(|s| s.fields.is_empty())
            {
                Vec::new()
            } else {
                karmem_format::value::encode(layout, shape.results, &value)
                    .map_err(|e| anyhow!("the host function's result does not encode: {e}"))?
                    .as_slice()
                    .to_vec()
            }
        }
        Server::Route(route) => {
            let window = caller.data().window_holding(ptr, len);
            match window {
                Some(window) => {
                    let message = Message::InRegion {
                        region: &window.region,
                        offset: ptr - window.offset,
                        len,
                    };
                    route.call(function, &message)?
                }
                None => {
                    let message = copy_out(caller)?;
                    route.call(function, &Message::Bytes(&message))?
                }
            }
        }
        Server::Missing => bail!("not served"),
    };
    if result.is_empty() {
        return Ok(0);
    }
    let result_len = i32::try_from(result.len()).context("result message larger than 2 GiB")?;
    let alloc = caller
        .get_export(entry::ALLOC)
        .and_then(Extern::into_func)
        .with_context(|| format!("the caller exports no `{}`", entry::ALLOC))?
        .typed::<(i32, i32), i32>(&*caller)
        .into_anyhow()
        .with_context(|| format!("`{}` has the wrong type", entry::ALLOC))?;
    let at = alloc
        .call(&mut *caller, (result_len, MESSAGE_ALIGN))
        .into_anyhow()
        .with_context(|| format!("`{}` failed", entry::ALLOC))?;
    guarded_write(&mut *caller, memory, u64::from(at as u32), &result).with_context(|| {
        format!("cannot copy the result message into the buffer `{}` returned", entry::ALLOC)
    })?;
    Ok(karmem_contract::pack(at as u32, result_len as u32))
}

fn has_section(bytes: &[u8], name: &str) -> bool {
    wasmparser::Parser::new(0).parse_all(bytes).any(|payload| {
        matches!(payload, Ok(wasmparser::Payload::CustomSection(section)) if section.name() == name)
    })
}

fn is_component(bytes: &[u8]) -> bool {
    wasmparser::Parser::is_component(bytes)
}
