//! Guests linked to guests by pattern (paper §4.3.2), with their interface
//! memories shared (§4.3.3): composition without the component model.
//!
//! A [`Composition`] holds lowered modules. Instantiating one of them
//! ([`Composition::instantiate`]) serves each of its `karmem:<I>` imports
//! from the registered modules that export `I`, by `I`'s pattern:
//!
//! - **direct**: one exporter (the host's [`Composition::choose`], else the
//!   first registered), instantiated for this importer alone;
//! - **fanout**: every exporter, one private instance each, called in
//!   registration order with the same argument message; the results are
//!   collected in order and handed to the host's
//!   [`Composition::on_fanout`] observer, and the importer receives the
//!   first successful one (its import has one result). A failing exporter is
//!   poisoned and recorded; the others still run. The import fails only
//!   when every exporter failed;
//! - **singleton**: one exporter instance shared by every importer of the
//!   composition (and the host, [`Composition::singleton`]): its state
//!   persists between them. A failed singleton stays failed rather than
//!   silently losing the state everyone shares;
//! - **pool**: N instances of the exporter shared by every importer, calls
//!   spread across them from any thread, failed members replaced
//!   ([`crate::link::Pool`]).
//!
//! The pattern is the one the importer's `karmem:idl` declares for `I`
//! (what its descriptor reports), unless the host overrides it with
//! [`Composition::set_pattern`]. A component lowered from WIT declares
//! `direct` everywhere (WIT has no patterns; docs/IDL.md "Overlay"), so for
//! those the host's choice at link time is the way to pick another pattern;
//! a module written against KarmemIDL brings its own. The pool size is
//! always the host's ([`Pattern::Pool`]), by default the machine's
//! parallelism.
//!
//! Interface memories: for direct, fanout and singleton, every interface
//! memory of `I` is one [`SharedRegion`] per group (the importer and the
//! instances serving it; for a singleton, its first importer), mapped into
//! each participant at the offset its handshake reported, with its declared
//! access (import side or export side). An argument message the importer
//! writes into its window reaches every serving guest in place: one
//! physical copy however many consumers. Where guests could run
//! concurrently on one region — a singleton's later importers, pool members
//! — windows are not shared: messages are copied, and the importer's regions
//! stay private to it.
//!
//! Owns: the registry of modules, pattern resolution, the routes and their
//! regions. Leaves to [`crate::invoke`] serving one import call and mapping
//! a window, and to [`crate::link`] the pool.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, RwLock, Weak};

use anyhow::{Context, Result, anyhow, bail};
use karmem_format::Value;

use crate::handshake::ModuleAbi;
use crate::invoke::{
    LinkedSession, Message, Route, Session, SessionModule, SessionOptions, check_interface_hashes,
    decode_result_message,
};
use crate::link::{Pattern, Pool};
use crate::runtime::Runtime;
use crate::shared::SharedRegion;

/// A module registered in a [`Composition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleId(usize);

/// One fanout call, as the host's observer sees it.
#[derive(Debug)]
pub struct FanoutCall<'a> {
    /// The interface.
    pub interface: &'a str,
    /// The function.
    pub function: &'a str,
    /// Each exporter's decoded result (or its error), in registration order.
    pub results: &'a [Result<Value, String>],
}

/// Receives every fanout call's results.
pub type FanoutObserver = Arc<dyn Fn(&FanoutCall<'_>) + Send + Sync>;

/// Lowered modules wired to each other by pattern. Cheap to clone; usable
/// from several threads.
#[derive(Clone)]
pub struct Composition {
    inner: Arc<Inner>,
}

impl fmt::Debug for Composition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .inner
            .registry
            .read()
            .map(|r| r.modules.iter().map(|m| m.name.clone()).collect())
            .unwrap_or_default();
        f.debug_struct("Composition")
            .field("modules", &names)
            .finish_non_exhaustive()
    }
}

struct Inner {
    runtime: Arc<Runtime>,
    registry: RwLock<Registry>,
    /// Singletons and pools, by interface: shared by every importer.
    shared: Mutex<BTreeMap<String, Shared>>,
    observer: RwLock<Option<FanoutObserver>>,
}

struct Registry {
    modules: Vec<Entry>,
    patterns: BTreeMap<String, Pattern>,
    chosen: BTreeMap<String, ModuleId>,
    pool_size: NonZeroUsize,
}

#[derive(Clone)]
struct Entry {
    name: String,
    module: SessionModule,
    options: SessionOptions,
    imports: Vec<String>,
    exports: Vec<String>,
}

#[derive(Clone)]
enum Shared {
    Singleton(Arc<GroupRoute>),
    Pool(Arc<PoolRoute>),
}

/// How one importer's interface is served.
enum Wired {
    Group(Arc<GroupRoute>),
    Pool(Arc<PoolRoute>),
}

impl Composition {
    /// An empty composition on `runtime`.
    pub fn new(runtime: Arc<Runtime>) -> Self {
        let pool_size = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        Composition {
            inner: Arc::new(Inner {
                runtime,
                registry: RwLock::new(Registry {
                    modules: Vec::new(),
                    patterns: BTreeMap::new(),
                    chosen: BTreeMap::new(),
                    pool_size,
                }),
                shared: Mutex::new(BTreeMap::new()),
                observer: RwLock::new(None),
            }),
        }
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.inner.runtime
    }

    /// Loads the lowered module `bytes` (through the runtime's cache) and
    /// registers it as `name`. Its `options` apply to every instance of it
    /// (its host functions take precedence over linked guests).
    pub fn add(&self, name: &str, bytes: &[u8], options: SessionOptions) -> Result<ModuleId> {
        let module = SessionModule::load(&self.inner.runtime, bytes)
            .with_context(|| format!("failed to load `{name}`"))?;
        self.add_module(name, module, options)
    }

    /// Registers a module loaded before.
    pub fn add_module(
        &self,
        name: &str,
        module: SessionModule,
        options: SessionOptions,
    ) -> Result<ModuleId> {
        let imports = module.imported_interfaces();
        let exports = module.exported_interfaces();
        let mut registry = self.write()?;
        registry.modules.push(Entry {
            name: name.to_string(),
            module,
            options,
            imports,
            exports,
        });
        Ok(ModuleId(registry.modules.len() - 1))
    }

    /// The host's pattern for `interface`, overriding what importers declare.
    pub fn set_pattern(&self, interface: &str, pattern: Pattern) -> Result<()> {
        self.write()?
            .patterns
            .insert(interface.to_string(), pattern);
        Ok(())
    }

    /// The exporter of `interface` for the direct, singleton and pool
    /// patterns (default: the first registered module exporting it).
    pub fn choose(&self, interface: &str, exporter: ModuleId) -> Result<()> {
        let mut registry = self.write()?;
        let entry = registry
            .modules
            .get(exporter.0)
            .context("unknown module id")?;
        if !entry.exports.iter().any(|e| e == interface) {
            bail!("`{}` does not export interface `{interface}`", entry.name);
        }
        registry.chosen.insert(interface.to_string(), exporter);
        Ok(())
    }

    /// The pool size for interfaces whose importers declare `pool` (the
    /// descriptor carries no size).
    pub fn set_default_pool_size(&self, size: NonZeroUsize) -> Result<()> {
        self.write()?.pool_size = size;
        Ok(())
    }

    /// Calls `observer` with the collected results of every fanout call.
    pub fn on_fanout(&self, observer: FanoutObserver) -> Result<()> {
        *self
            .inner
            .observer
            .write()
            .map_err(|_| anyhow!("the composition's lock was poisoned"))? = Some(observer);
        Ok(())
    }

    /// The pattern `importer`'s imports of `interface` are served by.
    pub fn pattern_of(&self, importer: ModuleId, interface: &str) -> Result<Pattern> {
        let registry = self.read()?;
        let entry = registry
            .modules
            .get(importer.0)
            .context("unknown module id")?;
        Ok(resolve_pattern(&registry, entry, interface))
    }

    /// The shared exporter instance of a singleton interface, once an
    /// importer has been instantiated.
    pub fn singleton(&self, interface: &str) -> Option<LinkedSession> {
        match self.inner.shared.lock().ok()?.get(interface)? {
            Shared::Singleton(group) => group.targets.first().cloned(),
            Shared::Pool(_) => None,
        }
    }

    /// The pool serving a pool interface, once an importer has been
    /// instantiated.
    pub fn pool(&self, interface: &str) -> Option<Arc<Pool<Session>>> {
        match self.inner.shared.lock().ok()?.get(interface)? {
            Shared::Pool(route) => Some(Arc::clone(&route.pool)),
            Shared::Singleton(_) => None,
        }
    }

    /// Instantiates `module` with each `karmem:*` import it has served by
    /// the registered exporters of that interface, by pattern (module
    /// docs); imports no module exports stay with host functions or trap
    /// when called. Checks every linked function's type hash and maps the
    /// interface memories. Modules that import from each other in a cycle
    /// are refused.
    pub fn instantiate(&self, module: ModuleId) -> Result<Session> {
        self.check_acyclic(module)?;
        self.instantiate_unchecked(module)
    }

    fn instantiate_unchecked(&self, id: ModuleId) -> Result<Session> {
        let (entry, plan) = {
            let registry = self.read()?;
            let entry = registry
                .modules
                .get(id.0)
                .context("unknown module id")?
                .clone();
            let mut plan = Vec::new();
            for interface in &entry.imports {
                let exporters = exporters_of(&registry, id, interface);
                let Some(first) = exporters.first().copied() else {
                    continue;
                };
                let chosen = registry
                    .chosen
                    .get(interface)
                    .copied()
                    // A module never serves its own imports.
                    .filter(|chosen| *chosen != id)
                    .unwrap_or(first);
                plan.push((
                    interface.clone(),
                    resolve_pattern(&registry, &entry, interface),
                    exporters,
                    chosen,
                ));
            }
            (entry, plan)
        };
        let mut routes: BTreeMap<String, Arc<dyn Route>> = BTreeMap::new();
        let mut wired = Vec::new();
        for (interface, pattern, exporters, chosen) in plan {
            let context = || {
                format!(
                    "failed to link `{}`'s import `{interface}` ({pattern:?})",
                    entry.name
                )
            };
            let route = match pattern {
                Pattern::Direct => Wired::Group(
                    self.group(&interface, pattern, &[chosen], &entry)
                        .with_context(context)?,
                ),
                Pattern::Fanout => Wired::Group(
                    self.group(&interface, pattern, &exporters, &entry)
                        .with_context(context)?,
                ),
                Pattern::Singleton => self
                    .shared(&interface, pattern, chosen, &entry)
                    .with_context(context)?,
                Pattern::Pool { .. } => self
                    .shared(&interface, pattern, chosen, &entry)
                    .with_context(context)?,
            };
            let as_route: Arc<dyn Route> = match &route {
                Wired::Group(group) => Arc::clone(group) as Arc<dyn Route>,
                Wired::Pool(pool) => Arc::clone(pool) as Arc<dyn Route>,
            };
            routes.insert(interface.clone(), as_route);
            wired.push((interface, route));
        }
        let mut session =
            Session::instantiate(&self.inner.runtime, &entry.module, &entry.options, &routes)
                .with_context(|| format!("failed to instantiate `{}`", entry.name))?;
        for (interface, route) in wired {
            let context = || format!("failed to link `{}`'s import `{interface}`", entry.name);
            match route {
                Wired::Group(group) => {
                    session
                        .check_exporters(&interface, &group.targets)
                        .with_context(context)?;
                    group.map_memories(&mut session).with_context(context)?;
                    session.set_exporters(&interface, group.targets.clone());
                }
                Wired::Pool(pool) => {
                    if let Some(import) = session.imported(&interface) {
                        pool.pool
                            .with(|member| check_interface_hashes(session.abi(), import, member))
                            .with_context(context)?;
                    }
                }
            }
        }
        Ok(session)
    }

    /// Private instances of `exporters`, in order, as one group.
    fn group(
        &self,
        interface: &str,
        pattern: Pattern,
        exporters: &[ModuleId],
        importer: &Entry,
    ) -> Result<Arc<GroupRoute>> {
        let targets = exporters
            .iter()
            .map(|id| {
                self.instantiate_unchecked(*id)
                    .map(|s| Arc::new(Mutex::new(s)))
            })
            .collect::<Result<Vec<_>>>()?;
        let observer = match pattern {
            Pattern::Fanout => {
                let observer = self
                    .inner
                    .observer
                    .read()
                    .map_err(|_| anyhow!("the composition's lock was poisoned"))?
                    .clone();
                observer.zip(importer.module.abi_arc())
            }
            _ => None,
        };
        Ok(Arc::new(GroupRoute {
            interface: interface.to_string(),
            pattern,
            targets,
            regions: Mutex::new(BTreeMap::new()),
            observer,
        }))
    }

    /// The singleton or pool of `interface`, made on first use.
    fn shared(
        &self,
        interface: &str,
        pattern: Pattern,
        exporter: ModuleId,
        importer: &Entry,
    ) -> Result<Wired> {
        let existing = self
            .inner
            .shared
            .lock()
            .map_err(|_| anyhow!("the composition's lock was poisoned"))?
            .get(interface)
            .cloned();
        let made = match existing {
            Some(made) => made,
            // Made without holding the lock: the exporter may have imports
            // of its own to wire. A racing importer's duplicate is dropped.
            None => {
                let made = match pattern {
                    Pattern::Pool { instances } => {
                        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
                        let factory = Arc::new(move || -> Result<Session> {
                            let inner = weak.upgrade().context("the composition is gone")?;
                            Composition { inner }.instantiate_unchecked(exporter)
                        });
                        let pool = Pool::new(instances, factory)?;
                        Shared::Pool(Arc::new(PoolRoute {
                            interface: interface.to_string(),
                            pool: Arc::new(pool),
                        }))
                    }
                    _ => Shared::Singleton(self.group(
                        interface,
                        Pattern::Singleton,
                        &[exporter],
                        importer,
                    )?),
                };
                let mut shared = self
                    .inner
                    .shared
                    .lock()
                    .map_err(|_| anyhow!("the composition's lock was poisoned"))?;
                shared.entry(interface.to_string()).or_insert(made).clone()
            }
        };
        match (made, pattern) {
            (Shared::Singleton(group), Pattern::Singleton) => Ok(Wired::Group(group)),
            (Shared::Pool(pool), Pattern::Pool { .. }) => Ok(Wired::Pool(pool)),
            _ => bail!(
                "interface `{interface}` is already served by another pattern in this composition"
            ),
        }
    }

    /// Refuses modules that import from each other in a cycle (an import
    /// call would re-enter a guest that is running).
    fn check_acyclic(&self, start: ModuleId) -> Result<()> {
        let registry = self.read()?;
        let name = |id: ModuleId| {
            registry
                .modules
                .get(id.0)
                .map(|m| m.name.clone())
                .unwrap_or_default()
        };
        let mut path = vec![start];
        let mut next_child = vec![0usize];
        while let (Some(&current), Some(child)) = (path.last(), next_child.last_mut()) {
            let entry = registry
                .modules
                .get(current.0)
                .context("unknown module id")?;
            let children: Vec<ModuleId> = entry
                .imports
                .iter()
                .flat_map(|i| exporters_of(&registry, current, i))
                .collect();
            match children.get(*child) {
                Some(&next) => {
                    *child += 1;
                    if path.contains(&next) {
                        let mut names: Vec<String> =
                            path.iter().map(|id| format!("`{}`", name(*id))).collect();
                        names.push(format!("`{}`", name(next)));
                        bail!(
                            "modules import from each other in a cycle: {}",
                            names.join(" -> ")
                        );
                    }
                    path.push(next);
                    next_child.push(0);
                }
                None => {
                    path.pop();
                    next_child.pop();
                }
            }
        }
        Ok(())
    }

    fn read(&self) -> Result<std::sync::RwLockReadGuard<'_, Registry>> {
        self.inner
            .registry
            .read()
            .map_err(|_| anyhow!("the composition's lock was poisoned"))
    }

    fn write(&self) -> Result<std::sync::RwLockWriteGuard<'_, Registry>> {
        self.inner
            .registry
            .write()
            .map_err(|_| anyhow!("the composition's lock was poisoned"))
    }
}

fn exporters_of(registry: &Registry, importer: ModuleId, interface: &str) -> Vec<ModuleId> {
    registry
        .modules
        .iter()
        .enumerate()
        .filter(|(index, entry)| {
            *index != importer.0 && entry.exports.iter().any(|e| e == interface)
        })
        .map(|(index, _)| ModuleId(index))
        .collect()
}

fn resolve_pattern(registry: &Registry, importer: &Entry, interface: &str) -> Pattern {
    registry
        .patterns
        .get(interface)
        .copied()
        .or_else(|| {
            importer
                .module
                .declared_pattern(interface, registry.pool_size)
        })
        .unwrap_or(Pattern::Direct)
}

/// Direct, fanout and singleton: fixed sessions sharing one region per
/// interface memory.
struct GroupRoute {
    interface: String,
    pattern: Pattern,
    targets: Vec<LinkedSession>,
    regions: Mutex<BTreeMap<String, Arc<SharedRegion>>>,
    /// Fanout only: the host's observer and the importer's schema, to
    /// decode results with.
    observer: Option<(FanoutObserver, Arc<ModuleAbi>)>,
}

impl GroupRoute {
    /// Maps every memory of the interface into `importer` and, where not
    /// mapped yet, into each target, one region per memory name. A
    /// singleton shares its regions with its first importer only: importers
    /// may run concurrently, and two writing one region would overwrite each
    /// other's messages; later importers' messages are copied.
    fn map_memories(&self, importer: &mut Session) -> Result<()> {
        let Some(import) = importer.imported(&self.interface).cloned() else {
            return Ok(());
        };
        if import.memories.is_empty() {
            return Ok(());
        }
        let mut regions = self
            .regions
            .lock()
            .map_err(|_| anyhow!("a route's lock was poisoned"))?;
        if matches!(self.pattern, Pattern::Singleton) && !regions.is_empty() {
            return Ok(());
        }
        for memory in &import.memories {
            let region = match regions.get(&memory.name) {
                Some(region) => Arc::clone(region),
                None => {
                    let region = SharedRegion::new(&memory.name, memory.pages)?;
                    regions.insert(memory.name.clone(), Arc::clone(&region));
                    region
                }
            };
            importer
                .map_shared(&memory.placement(&region)?)
                .with_context(|| {
                    format!(
                        "failed to map shared memory `{}` into the importer",
                        memory.name
                    )
                })?;
            for target in &self.targets {
                let mut exporter = target
                    .lock()
                    .map_err(|_| anyhow!("a linked module's lock was poisoned"))?;
                if exporter.window_of(&region).is_some() {
                    continue;
                }
                let info = exporter
                    .exported(&self.interface)
                    .and_then(|i| i.memories.iter().find(|m| m.name == memory.name))
                    .cloned()
                    .with_context(|| {
                        format!("the exporter declares no memory `{}`", memory.name)
                    })?;
                exporter
                    .map_shared(&info.placement(&region)?)
                    .with_context(|| {
                        format!(
                            "failed to map shared memory `{}` into the exporter",
                            memory.name
                        )
                    })?;
            }
        }
        Ok(())
    }
}

impl Route for GroupRoute {
    fn call(&self, function: &str, message: &Message<'_>) -> Result<Vec<u8>> {
        if !matches!(self.pattern, Pattern::Fanout) {
            let target = self.targets.first().context("the route has no exporter")?;
            let mut exporter = target
                .lock()
                .map_err(|_| anyhow!("a linked module's lock was poisoned"))?;
            return exporter
                .call_message(&self.interface, function, message)
                .context("the linked module failed");
        }
        let mut results: Vec<Result<Vec<u8>>> = Vec::with_capacity(self.targets.len());
        for target in &self.targets {
            let outcome = match target.lock() {
                Ok(mut exporter) => exporter.call_message(&self.interface, function, message),
                Err(_) => Err(anyhow!("a linked module's lock was poisoned")),
            };
            results.push(outcome);
        }
        if let Some((observer, abi)) = &self.observer {
            let decoded: Vec<Result<Value, String>> = results
                .iter()
                .map(|outcome| match outcome {
                    Ok(bytes) => {
                        decode_result_message(&abi.layout, &self.interface, function, bytes)
                            .map_err(|e| format!("{e:#}"))
                    }
                    Err(e) => Err(format!("{e:#}")),
                })
                .collect();
            observer(&FanoutCall {
                interface: &self.interface,
                function,
                results: &decoded,
            });
        }
        let count = results.len();
        let mut first_error = None;
        for outcome in results {
            match outcome {
                Ok(bytes) => return Ok(bytes),
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error.context(format!(
                "all {count} exporters of the fanout failed; the first error"
            ))),
            None => bail!("the fanout has no exporter"),
        }
    }
}

/// Pool: calls spread over the members, messages copied.
struct PoolRoute {
    interface: String,
    pool: Arc<Pool<Session>>,
}

impl Route for PoolRoute {
    fn call(&self, function: &str, message: &Message<'_>) -> Result<Vec<u8>> {
        self.pool
            .with(|member| member.call_message(&self.interface, function, message))
            .context("the pool member failed")
    }
}
