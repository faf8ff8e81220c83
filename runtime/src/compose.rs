//! Guests linked to guests by pattern (paper §4.3.2), with their interface
//! memories shared (§4.3.3): composition without the component model.
//!
//! A [`Composition`] holds lowered modules. Instantiating one of them
//! ([`Composition::instantiate`]) serves each of its `karmem:<I>` imports
//! from the registered modules that export an interface of the same WIT
//! identity (package, interface name, version: [`Identity`]), chosen as
//! [`plan`] says (one that fits, a layer over the others, the host's
//! [`Composition::choose`] or [`Composition::plug`]; two that fit equally
//! are an error naming both), by `I`'s pattern:
//!
//! - **direct**: one exporter, instantiated for this importer alone: one
//!   private instance per exporting module, shared by every interface the
//!   importer gets from it (a handle made through one is valid in another);
//! - **fanout**: every exporter, one private instance each, called in
//!   registration order with the same argument message; the results are
//!   collected in order and handed to the host's
//!   [`Composition::on_fanout`] observer, and the importer receives the
//!   first successful one (its import has one result). A failing exporter is
//!   poisoned and recorded; the others still run. The import fails only
//!   when every exporter failed;
//! - **singleton**: one instance of the exporting module shared by every
//!   importer of the composition (and the host, [`Composition::singleton`]):
//!   its state persists between them. A failed singleton stays failed rather
//!   than silently losing the state everyone shares;
//! - **pool**: N instances of the exporter shared by every importer, calls
//!   spread across them from any thread, failed members replaced
//!   ([`crate::link::Pool`]).
//!
//! Resource handles cross messages as the exporter's own numbers, so the
//! importer's `[resource-drop]<R>` import is served by the instance that
//! made the handle (its `<interface>.[resource-drop]<R>` export). Under
//! fanout and pool the host does not know which instance that is, and a
//! drop fails naming the handle.
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
//! regions. Leaves to [`identity`] what an interface is, to [`plan`] which
//! module serves which import, to [`crate::invoke`] serving one import call
//! and mapping a window, and to [`crate::link`] the pool.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, RwLock, Weak};

use anyhow::{Context, Result, anyhow, bail};
use karmem_format::Value;

pub mod identity;
pub mod plan;

pub use identity::Identity;
pub use plan::{FunctionMap, Link};

use crate::handshake::ModuleAbi;
use crate::invoke::{
    LinkedSession, Message, Route, Session, SessionModule, SessionOptions, check_interface_hashes,
    decode_result_message,
};
use crate::link::{Pattern, Pool};
use crate::runtime::Runtime;
use crate::shared::SharedRegion;
use plan::{Iface, Plug};

/// A module registered in a [`Composition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleId(usize);

/// One fanout call, as the host's observer sees it.
#[derive(Debug)]
pub struct FanoutCall<'a> {
    /// The interface (the importer's name).
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
    /// Singletons and pools: shared by every importer.
    shared: Mutex<SharedInstances>,
    observer: RwLock<Option<FanoutObserver>>,
}

struct Registry {
    modules: Vec<Entry>,
    /// The host's patterns, by KarmemIDL name or WIT identity.
    patterns: BTreeMap<String, Pattern>,
    /// The host's exporters, by KarmemIDL name or WIT identity.
    chosen: BTreeMap<String, ModuleId>,
    plugs: Vec<Plug>,
    pool_size: NonZeroUsize,
}

#[derive(Clone)]
struct Entry {
    name: String,
    module: SessionModule,
    options: SessionOptions,
    imports: Vec<Iface>,
    exports: Vec<Iface>,
}

/// Instances shared by every importer, by exporting module: one module is
/// one singleton (whichever of its interfaces is imported) or one pool.
#[derive(Default)]
struct SharedInstances {
    by_module: BTreeMap<ModuleId, Shared>,
    /// The module serving an interface as singleton or pool, by the
    /// importer's KarmemIDL name and WIT identity (for the host's look-ups).
    by_interface: BTreeMap<String, ModuleId>,
}

#[derive(Clone)]
enum Shared {
    Singleton(LinkedSession),
    Pool(Arc<Pool<Session>>),
}

/// A route of some functions of an import (`None`: all of them).
type FunctionRoute = (Option<FunctionMap>, Arc<dyn Route>);

/// How one link of an importer is served.
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
                    plugs: Vec::new(),
                    pool_size,
                }),
                shared: Mutex::new(SharedInstances::default()),
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
        let interfaces = |list: Vec<(String, Vec<String>)>| -> Vec<Iface> {
            list.into_iter()
                .map(|(name, functions)| Iface {
                    identity: Identity::of(module.abi(), &name),
                    name,
                    functions,
                })
                .collect()
        };
        let imports = interfaces(module.imported_functions());
        let exports = interfaces(module.exported_functions());
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

    /// The host's pattern for `interface` (a KarmemIDL name or a WIT
    /// identity such as `a:b/x@1.0.0`), overriding what importers declare.
    pub fn set_pattern(&self, interface: &str, pattern: Pattern) -> Result<()> {
        self.write()?
            .patterns
            .insert(interface.to_string(), pattern);
        Ok(())
    }

    /// The exporter of `interface` (a KarmemIDL name or a WIT identity) for
    /// the direct, singleton and pool patterns, when several fit (default:
    /// the one that fits, else an error naming the candidates; see
    /// docs/RUNTIME.md).
    pub fn choose(&self, interface: &str, exporter: ModuleId) -> Result<()> {
        let mut registry = self.write()?;
        let entry = registry
            .modules
            .get(exporter.0)
            .context("unknown module id")?;
        if !entry
            .exports
            .iter()
            .any(|e| e.name == interface || e.identity.is_named(interface))
        {
            bail!("`{}` does not export interface `{interface}`", entry.name);
        }
        registry.chosen.insert(interface.to_string(), exporter);
        Ok(())
    }

    /// Serves `importer`'s `import` with `exporter`'s `export`, whatever
    /// their names: an explicit link, for what names cannot tell (a
    /// composition tool wired world-level `toplevel-import` to
    /// `toplevel-export`) and to settle an ambiguous link. Both name an
    /// interface (KarmemIDL name or WIT identity) or both a world-level
    /// function (WIT or KarmemIDL spelling). Type hashes are checked when the
    /// importer is instantiated, as for any link.
    pub fn plug(
        &self,
        importer: ModuleId,
        import: &str,
        exporter: ModuleId,
        export: &str,
    ) -> Result<()> {
        let mut registry = self.write()?;
        if importer == exporter {
            bail!("a module cannot serve its own import `{import}`");
        }
        let importing = registry
            .modules
            .get(importer.0)
            .context("unknown module id")?;
        let exporting = registry
            .modules
            .get(exporter.0)
            .context("unknown module id")?;
        let theirs = find_end(&importing.imports, import).with_context(|| {
            format!(
                "`{}` imports no interface or world-level function `{import}` (it imports {})",
                importing.name,
                describe(&importing.imports)
            )
        })?;
        let ours = find_end(&exporting.exports, export).with_context(|| {
            format!(
                "`{}` exports no interface or world-level function `{export}` (it exports {})",
                exporting.name,
                describe(&exporting.exports)
            )
        })?;
        if theirs.1.is_some() != ours.1.is_some() {
            bail!(
                "cannot plug `{import}` with `{export}`: one is an interface, the other a world-level function"
            );
        }
        let plug = Plug {
            importer,
            import: theirs.0,
            import_function: theirs.1,
            exporter,
            export: ours.0,
            export_function: ours.1,
        };
        registry.plugs.retain(|p| {
            (p.importer, &p.import, &p.import_function)
                != (plug.importer, &plug.import, &plug.import_function)
        });
        registry.plugs.push(plug);
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

    /// The pattern `importer`'s imports of `interface` (a KarmemIDL name or
    /// a WIT identity) are served by.
    pub fn pattern_of(&self, importer: ModuleId, interface: &str) -> Result<Pattern> {
        let registry = self.read()?;
        let entry = registry
            .modules
            .get(importer.0)
            .context("unknown module id")?;
        let import = entry
            .imports
            .iter()
            .find(|i| i.name == interface || i.identity.is_named(interface))
            .with_context(|| format!("`{}` imports no interface `{interface}`", entry.name))?;
        Ok(plan::resolve_pattern(&registry, entry, import))
    }

    /// Which module serves which of `importer`'s imports (docs/RUNTIME.md,
    /// "Which exporter"); errors as [`Composition::instantiate`] would for an
    /// ambiguous link.
    pub fn links(&self, importer: ModuleId) -> Result<Vec<Link>> {
        plan::plan(&*self.read()?, importer)
    }

    /// The registered name of `module`.
    pub fn name_of(&self, module: ModuleId) -> Option<String> {
        Some(self.read().ok()?.modules.get(module.0)?.name.clone())
    }

    /// The shared exporter instance of a singleton interface (by the
    /// importer's KarmemIDL name or the WIT identity), once an importer has
    /// been instantiated.
    pub fn singleton(&self, interface: &str) -> Option<LinkedSession> {
        let shared = self.inner.shared.lock().ok()?;
        match shared.by_module.get(shared.by_interface.get(interface)?)? {
            Shared::Singleton(session) => Some(Arc::clone(session)),
            Shared::Pool(_) => None,
        }
    }

    /// The pool serving a pool interface, once an importer has been
    /// instantiated.
    pub fn pool(&self, interface: &str) -> Option<Arc<Pool<Session>>> {
        let shared = self.inner.shared.lock().ok()?;
        match shared.by_module.get(shared.by_interface.get(interface)?)? {
            Shared::Pool(pool) => Some(Arc::clone(pool)),
            Shared::Singleton(_) => None,
        }
    }

    /// Instantiates `module` with each `karmem:*` import it has served by
    /// the registered exporters of that interface (by WIT identity, plugs
    /// and choices: [`Composition::links`]), by pattern (module docs);
    /// imports no module exports stay with host functions or trap when
    /// called. Checks every linked function's type hash and maps the
    /// interface memories. Modules that import from each other in a cycle,
    /// and ambiguous links, are refused.
    pub fn instantiate(&self, module: ModuleId) -> Result<Session> {
        self.check_acyclic(module)?;
        self.instantiate_unchecked(module)
    }

    fn instantiate_unchecked(&self, id: ModuleId) -> Result<Session> {
        let (entry, links, names) = {
            let registry = self.read()?;
            let entry = registry
                .modules
                .get(id.0)
                .context("unknown module id")?
                .clone();
            let links = plan::plan(&registry, id)?;
            let names: BTreeMap<ModuleId, String> = links
                .iter()
                .flat_map(|l| l.exporters.iter().map(|(m, _)| *m))
                .map(|m| (m, plan::module_name(&registry, m)))
                .collect();
            (entry, links, names)
        };
        // Direct and fanout instances are private to this importer, one per
        // exporting module: every interface it gets from that module goes to
        // the same instance, so handles made through one interface are valid
        // in another (`use e1.{x}` in `e2`).
        let mut private: BTreeMap<ModuleId, LinkedSession> = BTreeMap::new();
        let mut by_import: BTreeMap<String, Vec<FunctionRoute>> = BTreeMap::new();
        let mut wired = Vec::new();
        for link in links {
            let context = || {
                format!(
                    "failed to link `{}`'s import `{}` ({:?})",
                    entry.name, link.import, link.pattern
                )
            };
            let route = match link.pattern {
                Pattern::Direct | Pattern::Fanout => {
                    let mut targets = Vec::new();
                    for (module, export) in &link.exporters {
                        let session = match private.get(module) {
                            Some(session) => Arc::clone(session),
                            None => {
                                let session = Arc::new(Mutex::new(
                                    self.instantiate_unchecked(*module).with_context(context)?,
                                ));
                                private.insert(*module, Arc::clone(&session));
                                session
                            }
                        };
                        targets.push(Target {
                            session,
                            export: export.clone(),
                            module: names.get(module).cloned().unwrap_or_default(),
                        });
                    }
                    Wired::Group(self.group(&link, targets, &entry)?)
                }
                Pattern::Singleton | Pattern::Pool { .. } => {
                    let (module, export) = link
                        .exporters
                        .first()
                        .cloned()
                        .context("a link without an exporter")?;
                    let identity = entry
                        .imports
                        .iter()
                        .find(|i| i.name == link.import)
                        .map(|i| i.identity.clone());
                    match self
                        .shared(module, link.pattern, &link.import, identity)
                        .with_context(context)?
                    {
                        Shared::Singleton(session) => {
                            let target = Target {
                                session,
                                export,
                                module: names.get(&module).cloned().unwrap_or_default(),
                            };
                            Wired::Group(self.group(&link, vec![target], &entry)?)
                        }
                        Shared::Pool(pool) => Wired::Pool(Arc::new(PoolRoute {
                            export,
                            functions: link.functions.clone(),
                            pool,
                        })),
                    }
                }
            };
            let as_route: Arc<dyn Route> = match &route {
                Wired::Group(group) => Arc::clone(group) as Arc<dyn Route>,
                Wired::Pool(pool) => Arc::clone(pool) as Arc<dyn Route>,
            };
            by_import
                .entry(link.import.clone())
                .or_default()
                .push((link.functions.clone(), as_route));
            wired.push((link, route));
        }
        let routes: BTreeMap<String, Arc<dyn Route>> = by_import
            .into_iter()
            .map(|(import, mut routes)| {
                let route: Arc<dyn Route> = match (routes.len(), routes.first()) {
                    (1, Some((None, _))) => routes.pop().map(|(_, r)| r),
                    _ => None,
                }
                .unwrap_or_else(|| {
                    Arc::new(DispatchRoute {
                        by_function: routes
                            .into_iter()
                            .flat_map(|(functions, route)| {
                                functions
                                    .unwrap_or_default()
                                    .into_keys()
                                    .map(move |f| (f, Arc::clone(&route)))
                            })
                            .collect(),
                    })
                });
                (import, route)
            })
            .collect();
        let mut session =
            Session::instantiate_served(&self.inner.runtime, &entry.module, &entry.options, &routes)
                .with_context(|| format!("failed to instantiate `{}`", entry.name))?;
        let mut exporters: BTreeMap<String, Vec<LinkedSession>> = BTreeMap::new();
        for (link, route) in wired {
            let context = || format!("failed to link `{}`'s import `{}`", entry.name, link.import);
            match route {
                Wired::Group(group) => {
                    for target in &group.targets {
                        session
                            .check_link(
                                &link.import,
                                link.functions.as_ref(),
                                &target.session,
                                &target.export,
                            )
                            .with_context(|| format!("linked to `{}`", target.module))
                            .with_context(context)?;
                    }
                    group.map_memories(&mut session).with_context(context)?;
                    exporters
                        .entry(link.import.clone())
                        .or_default()
                        .extend(group.targets.iter().map(|t| Arc::clone(&t.session)));
                }
                Wired::Pool(pool) => {
                    if let Some(import) = session.imported(&link.import) {
                        pool.pool
                            .with(|member| {
                                check_interface_hashes(
                                    session.abi(),
                                    import,
                                    link.functions.as_ref(),
                                    member,
                                    &pool.export,
                                )
                            })
                            .with_context(context)?;
                    }
                }
            }
        }
        for (import, sessions) in exporters {
            session.set_exporters(&import, sessions);
        }
        Ok(session)
    }

    /// The route of one link over `targets`.
    fn group(
        &self,
        link: &Link,
        targets: Vec<Target>,
        importer: &Entry,
    ) -> Result<Arc<GroupRoute>> {
        let observer = match link.pattern {
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
            import: link.import.clone(),
            pattern: link.pattern,
            functions: link.functions.clone(),
            targets,
            regions: Mutex::new(BTreeMap::new()),
            observer,
        }))
    }

    /// The singleton or pool of `module`, made on first use.
    fn shared(
        &self,
        module: ModuleId,
        pattern: Pattern,
        import: &str,
        identity: Option<Identity>,
    ) -> Result<Shared> {
        let existing = self.lock_shared()?.by_module.get(&module).cloned();
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
                            Composition { inner }.instantiate_unchecked(module)
                        });
                        Shared::Pool(Arc::new(Pool::new(instances, factory)?))
                    }
                    _ => {
                        Shared::Singleton(Arc::new(Mutex::new(self.instantiate_unchecked(module)?)))
                    }
                };
                self.lock_shared()?
                    .by_module
                    .entry(module)
                    .or_insert(made)
                    .clone()
            }
        };
        let mut shared = self.lock_shared()?;
        shared.by_interface.insert(import.to_string(), module);
        if let Some(Identity::Wit(wit)) = identity {
            shared.by_interface.insert(wit, module);
        }
        match (&made, pattern) {
            (Shared::Singleton(_), Pattern::Singleton)
            | (Shared::Pool(_), Pattern::Pool { .. }) => Ok(made),
            _ => bail!(
                "the exporting module is already shared by another pattern in this composition"
            ),
        }
    }

    /// Refuses modules that import from each other in a cycle (an import
    /// call would re-enter a guest that is running), following the links
    /// the plan makes.
    fn check_acyclic(&self, start: ModuleId) -> Result<()> {
        let registry = self.read()?;
        let name = |id: ModuleId| plan::module_name(&registry, id);
        let mut children_of: BTreeMap<ModuleId, Vec<ModuleId>> = BTreeMap::new();
        let mut path = vec![start];
        let mut next_child = vec![0usize];
        while let (Some(&current), Some(child)) = (path.last(), next_child.last_mut()) {
            if let std::collections::btree_map::Entry::Vacant(slot) = children_of.entry(current) {
                slot.insert(
                    plan::plan(&registry, current)?
                        .into_iter()
                        .flat_map(|link| link.exporters.into_iter().map(|(m, _)| m))
                        .collect(),
                );
            }
            match children_of.get(&current).and_then(|c| c.get(*child)) {
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

    fn lock_shared(&self) -> Result<std::sync::MutexGuard<'_, SharedInstances>> {
        self.inner
            .shared
            .lock()
            .map_err(|_| anyhow!("the composition's lock was poisoned"))
    }
}

/// An interface (`(name, None)`) or world-level function
/// (`(interface, Some(function))`) of `list` that `written` names.
fn find_end(list: &[Iface], written: &str) -> Option<(String, Option<String>)> {
    let interface = list.iter().find(|i| {
        i.identity != Identity::World && (i.name == written || i.identity.is_named(written))
    });
    if let Some(interface) = interface {
        return Some((interface.name.clone(), None));
    }
    list.iter()
        .filter(|i| i.identity == Identity::World)
        .find_map(|i| {
            i.functions
                .iter()
                .find(|f| *f == written || karmem_format::wave::kebab(f) == written)
                .map(|f| (i.name.clone(), Some(f.clone())))
        })
}

/// `a:b/x (`b_x`), function `f`, ...` for error messages.
fn describe(list: &[Iface]) -> String {
    let mut names = Vec::new();
    for iface in list {
        match &iface.identity {
            Identity::World => names.extend(
                iface
                    .functions
                    .iter()
                    .map(|f| format!("function `{}`", karmem_format::wave::kebab(f))),
            ),
            identity => names.push(format!("`{identity}` (`{}`)", iface.name)),
        }
    }
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(", ")
    }
}

/// One serving instance of a link.
struct Target {
    session: LinkedSession,
    /// The exporter's name of the interface.
    export: String,
    /// The exporting module's registered name, for errors.
    module: String,
}

/// Direct, fanout and singleton: fixed sessions sharing one region per
/// interface memory.
struct GroupRoute {
    /// The importer's name of the interface.
    import: String,
    pattern: Pattern,
    /// Importer's function names to exporters' (`None`: the same).
    functions: Option<FunctionMap>,
    targets: Vec<Target>,
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
        let Some(import) = importer.imported(&self.import).cloned() else {
            return Ok(());
        };
        if import.memories.is_empty() {
            return Ok(());
        }
        if matches!(self.pattern, Pattern::Singleton) {
            for target in &self.targets {
                let exporter = target
                    .session
                    .lock()
                    .map_err(|_| anyhow!("a linked module's lock was poisoned"))?;
                let mapped = exporter.windows();
                let taken = exporter.exported(&target.export).is_some_and(|info| {
                    info.memories
                        .iter()
                        .any(|m| mapped.iter().any(|w| w.offset == m.offset))
                });
                if taken {
                    return Ok(());
                }
            }
        }
        let mut regions = self
            .regions
            .lock()
            .map_err(|_| anyhow!("a route's lock was poisoned"))?;
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
                    .session
                    .lock()
                    .map_err(|_| anyhow!("a linked module's lock was poisoned"))?;
                if exporter.window_of(&region).is_some() {
                    continue;
                }
                let info = exporter
                    .exported(&target.export)
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

    /// The exporter's name of the importer's `function`.
    fn theirs<'a>(&'a self, function: &'a str) -> &'a str {
        self.functions
            .as_ref()
            .and_then(|map| map.get(function))
            .map_or(function, String::as_str)
    }
}

impl Route for GroupRoute {
    fn call(&self, function: &str, message: &Message<'_>) -> Result<Vec<u8>> {
        let theirs = self.theirs(function);
        if !matches!(self.pattern, Pattern::Fanout) {
            let target = self.targets.first().context("the route has no exporter")?;
            let mut exporter = target
                .session
                .lock()
                .map_err(|_| anyhow!("a linked module's lock was poisoned"))?;
            return exporter
                .call_message(&target.export, theirs, message)
                .with_context(|| format!("the linked module `{}` failed", target.module));
        }
        let mut results: Vec<Result<Vec<u8>>> = Vec::with_capacity(self.targets.len());
        for target in &self.targets {
            let outcome = match target.session.lock() {
                Ok(mut exporter) => exporter.call_message(&target.export, theirs, message),
                Err(_) => Err(anyhow!("a linked module's lock was poisoned")),
            };
            results.push(outcome);
        }
        if let Some((observer, abi)) = &self.observer {
            let decoded: Vec<Result<Value, String>> = results
                .iter()
                .map(|outcome| match outcome {
                    Ok(bytes) => decode_result_message(&abi.layout, &self.import, function, bytes)
                        .map_err(|e| format!("{e:#}")),
                    Err(e) => Err(format!("{e:#}")),
                })
                .collect();
            observer(&FanoutCall {
                interface: &self.import,
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

    fn drop_resource(&self, field: &str, handle: i32) -> Result<()> {
        if matches!(self.pattern, Pattern::Fanout) {
            bail!(
                "handle {handle} cannot be dropped: under fanout every exporter made a handle, \
                 and the host does not track which one the importer kept"
            );
        }
        let target = self.targets.first().context("the route has no exporter")?;
        let mut exporter = target
            .session
            .lock()
            .map_err(|_| anyhow!("a linked module's lock was poisoned"))?;
        exporter
            .drop_handle(&target.export, field, handle)
            .with_context(|| format!("the linked module `{}` failed", target.module))
    }
}

/// Pool: calls spread over the members, messages copied.
struct PoolRoute {
    /// The exporter's name of the interface.
    export: String,
    functions: Option<FunctionMap>,
    pool: Arc<Pool<Session>>,
}

impl Route for PoolRoute {
    fn call(&self, function: &str, message: &Message<'_>) -> Result<Vec<u8>> {
        let theirs = self
            .functions
            .as_ref()
            .and_then(|map| map.get(function))
            .map_or(function, String::as_str);
        self.pool
            .with(|member| member.call_message(&self.export, theirs, message))
            .context("the pool member failed")
    }

    fn drop_resource(&self, _field: &str, handle: i32) -> Result<()> {
        bail!(
            "handle {handle} cannot be dropped: the pool does not track which member made it \
             (link interfaces with resources by another pattern)"
        )
    }
}

/// World-level imports served by several links: each function goes to its
/// own.
struct DispatchRoute {
    by_function: BTreeMap<String, Arc<dyn Route>>,
}

impl Route for DispatchRoute {
    fn call(&self, function: &str, message: &Message<'_>) -> Result<Vec<u8>> {
        self.by_function
            .get(function)
            .with_context(|| format!("no linked module serves `{function}`"))?
            .call(function, message)
    }
}
