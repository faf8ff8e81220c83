//! The engine for lowered modules ([`Runtime`]): wasmtime 48 with the
//! component model off, epoch interruption always on (driven by a ticker
//! thread), optional fuel, the windowed memory creator, and the module cache.
//!
//! Why these settings:
//! - `memory_init_cow(false)`: copy-on-write memory images bypass custom
//!   memory creators (and panic with data segments in wasmtime 48);
//! - on-demand allocation: the pooling allocator ignores custom creators;
//! - epoch interruption rather than fuel for timeouts: it costs a load and a
//!   compare at loop headers and function entries, fuel costs more;
//! - no async: the memory creator's "next layout" slot relies on memories
//!   being created on the instantiating thread.
//!
//! Leaves to `guest`: per-guest stores, limits and calls.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::WasmtimeResultExt;
use anyhow::{Context, Result, ensure};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, Linker, Module};

use crate::bulk;
use crate::cache::{CacheOutcome, ModuleCache};
use crate::guest::{Guest, GuestOptions, GuestState};
use crate::module::ModuleFacts;
use crate::shared::WindowedMemoryCreator;

/// Cache variant of modules compiled after the bulk-memory rewrite.
const BULK_VARIANT: &str = "bulk-memory-rewrite-v3";

/// How a [`Runtime`] is built.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Period of the epoch ticker; the granularity of every timeout.
    pub epoch_tick: Duration,
    /// Compile fuel metering into modules so guests can get fuel budgets
    /// ([`crate::GuestLimits::fuel`]). Changes the compiled code, hence the
    /// cache key.
    pub fuel: bool,
    /// Directory of the compiled-module cache; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Let wasmtime compile functions on several threads.
    pub parallel_compilation: bool,
    /// Rewrite `memory.copy`/`memory.fill` into wasm loops when loading
    /// ([`crate::bulk`]), so such modules may take read-only or inaccessible
    /// shared windows. Slower copies; off by default.
    pub rewrite_bulk_memory: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            epoch_tick: Duration::from_millis(5),
            fuel: false,
            cache_dir: None,
            parallel_compilation: true,
            rewrite_bulk_memory: false,
        }
    }
}

/// A compiled module and what the runtime learned about it.
#[derive(Debug, Clone)]
pub struct LoadedModule {
    pub(crate) module: Module,
    pub(crate) facts: Arc<ModuleFacts>,
    outcome: CacheOutcome,
}

impl LoadedModule {
    /// The wasmtime module.
    pub fn module(&self) -> &Module {
        &self.module
    }

    /// Facts from scanning the module's bytes.
    pub fn facts(&self) -> &ModuleFacts {
        &self.facts
    }

    /// Whether it came from the cache.
    pub fn cache_outcome(&self) -> &CacheOutcome {
        &self.outcome
    }
}

/// The host: one engine shared by every guest, each guest in its own store.
#[derive(Debug)]
pub struct Runtime {
    engine: Engine,
    creator: Arc<WindowedMemoryCreator>,
    cache: Option<ModuleCache>,
    config: RuntimeConfig,
    /// Shared with every guest: timeouts keep working for guests that
    /// outlive the runtime value.
    ticker: Arc<EpochTicker>,
}

impl Runtime {
    /// Builds the engine and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        ensure!(
            !config.epoch_tick.is_zero(),
            "the epoch tick must be longer than zero"
        );
        let creator = Arc::new(WindowedMemoryCreator::default());
        let mut wasmtime_config = Config::new();
        wasmtime_config
            .wasm_component_model(false)
            .epoch_interruption(true)
            .consume_fuel(config.fuel)
            .memory_init_cow(false)
            // Compositions lowered into one memory address their partitions
            // through static offsets as large as the partition's base
            // (docs/LOWERING.md, "One memory: partitions"): a guard region
            // that covers them keeps those accesses free of explicit checks
            // (wasmtime elides a check when offset + size fits the guard).
            // Virtual address space only.
            .memory_guard_size(2 << 30)
            .allocation_strategy(InstanceAllocationStrategy::OnDemand)
            .parallel_compilation(config.parallel_compilation)
            .with_host_memory(Arc::clone(&creator) as Arc<dyn wasmtime::MemoryCreator>);
        let engine = Engine::new(&wasmtime_config)
            .into_anyhow()
            .context("failed to create the wasmtime engine")?;
        let cache = config
            .cache_dir
            .as_ref()
            .map(ModuleCache::new)
            .transpose()?;
        let ticker = Arc::new(EpochTicker::start(&engine, config.epoch_tick)?);
        Ok(Runtime {
            engine,
            creator,
            cache,
            config,
            ticker,
        })
    }

    /// The wasmtime engine (for linkers, `Module` APIs, tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The configuration this runtime was built with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The module cache, if configured.
    pub fn cache(&self) -> Option<&ModuleCache> {
        self.cache.as_ref()
    }

    pub(crate) fn ticker(&self) -> Arc<EpochTicker> {
        Arc::clone(&self.ticker)
    }

    pub(crate) fn creator(&self) -> &WindowedMemoryCreator {
        &self.creator
    }

    /// An empty linker for this engine, where host functions are registered
    /// (per interface, once the ABI names them) before instantiation.
    pub fn linker(&self) -> Linker<GuestState> {
        Linker::new(&self.engine)
    }

    /// Loads a binary module through the cache (compiles when there is no
    /// cache), with the bulk-memory rewrite when the configuration asks.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedModule> {
        self.load_rewriting(bytes, self.config.rewrite_bulk_memory)
    }

    /// [`Runtime::load`] with the bulk-memory rewrite whatever the
    /// configuration says: for modules that will take shared windows with
    /// any access after instantiation (interface memories).
    pub fn load_with_bulk_rewrite(&self, bytes: &[u8]) -> Result<LoadedModule> {
        self.load_rewriting(bytes, true)
    }

    fn load_rewriting(&self, bytes: &[u8], rewrite_bulk_memory: bool) -> Result<LoadedModule> {
        let mut facts = ModuleFacts::scan(bytes)?;
        let rewrite = rewrite_bulk_memory && bulk::applies(bytes)?;
        let compile = || self.compile_bytes(bytes, rewrite);
        let (module, outcome) = match &self.cache {
            Some(cache) => {
                let variant = if rewrite { BULK_VARIANT } else { "" };
                cache.load_variant(&self.engine, bytes, variant, compile)?
            }
            None => (compile()?, CacheOutcome::Uncached),
        };
        if rewrite {
            // The rewrite replaced every bulk-memory instruction.
            facts.bulk_sites.clear();
        }
        Ok(LoadedModule {
            module,
            facts: Arc::new(facts),
            outcome,
        })
    }

    /// Compiles a binary module, bypassing the cache (still rewriting bulk
    /// memory when configured).
    pub fn compile(&self, bytes: &[u8]) -> Result<LoadedModule> {
        let mut facts = ModuleFacts::scan(bytes)?;
        let rewrite = self.config.rewrite_bulk_memory && bulk::applies(bytes)?;
        let module = self.compile_bytes(bytes, rewrite)?;
        if rewrite {
            facts.bulk_sites.clear();
        }
        Ok(LoadedModule {
            module,
            facts: Arc::new(facts),
            outcome: CacheOutcome::Uncached,
        })
    }

    fn compile_bytes(&self, bytes: &[u8], rewrite: bool) -> Result<Module> {
        let rewritten = if rewrite { bulk::rewrite(bytes)? } else { None };
        let bytes = rewritten.as_deref().unwrap_or(bytes);
        Module::new(&self.engine, bytes)
            .into_anyhow()
            .context("failed to compile the module")
    }

    /// Instantiates `module` with no imports.
    pub fn instantiate(&self, module: &LoadedModule, options: &GuestOptions) -> Result<Guest> {
        self.instantiate_with(&self.linker(), module, options)
    }

    /// Instantiates `module`, resolving its imports through `linker`.
    pub fn instantiate_with(
        &self,
        linker: &Linker<GuestState>,
        module: &LoadedModule,
        options: &GuestOptions,
    ) -> Result<Guest> {
        Guest::instantiate(self, linker, module, options)
    }
}

/// Increments the engine's epoch every tick until dropped.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: &Engine, tick: Duration) -> Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let engine = engine.clone();
        let thread = std::thread::Builder::new()
            .name("karmem-epoch".to_owned())
            .spawn(move || {
                // Any message or a dropped sender ends the loop.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })
            .context("failed to start the epoch ticker thread")?;
        Ok(EpochTicker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
