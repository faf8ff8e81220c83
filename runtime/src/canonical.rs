//! Calling a module lowered with `--abi canonical`, at the level of core
//! values: one instance, its exports called with flat core values, its
//! `memory` read and written, its `cabi_realloc` called.
//!
//! Owns: instantiating such a module on this runtime's engine (every import
//! is a function that traps naming itself: a canonical module's imports are
//! its component's, which no host here serves), the call with the module's
//! `cabi_post_*` function after it, and memory access.
//!
//! Does not own: what the core values mean (the canonical ABI's lifting and
//! lowering of component values: `karmem-bridge`'s `canonical_call`, which
//! knows the types from the module's `karmem:idl` section).

use anyhow::{Context as _, Result, anyhow, bail};
use wasmtime::{Extern, Func, Instance, Linker, Memory, Module, Store, Val};

use crate::Runtime;

/// A core value of a flattened signature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CoreValue {
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
}

/// One instance of a canonical-ABI module.
pub struct CanonicalInstance {
    store: Store<()>,
    instance: Instance,
    memory: Option<Memory>,
}

impl std::fmt::Debug for CanonicalInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanonicalInstance").finish_non_exhaustive()
    }
}

impl CanonicalInstance {
    /// Compiles and instantiates `bytes`; `_initialize` runs when exported.
    pub fn new(runtime: &Runtime, bytes: &[u8]) -> Result<Self> {
        let engine = runtime.engine();
        let module = Module::new(engine, bytes).map_err(|e| anyhow!("failed to compile the module: {e}"))?;
        let mut store = Store::new(engine, ());
        // The engine interrupts by epoch and may meter fuel: no budget here.
        store.set_epoch_deadline(u64::MAX / 2);
        let _ = store.set_fuel(u64::MAX);
        let mut linker: Linker<()> = Linker::new(engine);
        for import in module.imports() {
            let (module_name, field) = (import.module().to_string(), import.name().to_string());
            let Some(ty) = import.ty().func().cloned() else {
                bail!("the module imports `{module_name}` `{field}`, which is not a function: `run` cannot provide it");
            };
            let what = if module_name == "$root" { field.clone() } else { format!("{module_name}#{field}") };
            linker
                .func_new(&module_name, &field, ty, move |_, _, _| {
                    Err(wasmtime::Error::msg(format!(
                        "the module called its import `{what}`, which `run` does not serve for `--abi canonical` \
                         modules (lower with `--abi karmem` to serve imports with `--link`)"
                    )))
                })
                .map_err(|e| anyhow!("{e}"))?;
        }
        let instance = linker
            .instantiate(&mut store, &module)
            .map_err(|e| anyhow!("failed to instantiate the module: {e:?}"))?;
        let memory = instance.get_memory(&mut store, "memory");
        let mut this = CanonicalInstance { store, instance, memory };
        if this.has_export("_initialize") {
            this.call("_initialize", &[]).context("`_initialize` failed")?;
        }
        Ok(this)
    }

    /// Whether the module exports a function `name`.
    pub fn has_export(&mut self, name: &str) -> bool {
        self.instance.get_func(&mut self.store, name).is_some()
    }

    /// The names of the exported functions.
    pub fn export_names(&mut self) -> Vec<String> {
        let names: Vec<(String, bool)> = self
            .instance
            .exports(&mut self.store)
            .map(|e| {
                let name = e.name().to_string();
                (name, matches!(e.into_extern(), Extern::Func(_)))
            })
            .collect();
        names.into_iter().filter(|(_, func)| *func).map(|(name, _)| name).collect()
    }

    fn func(&mut self, name: &str) -> Result<Func> {
        self.instance
            .get_func(&mut self.store, name)
            .with_context(|| format!("the module exports no function `{name}`"))
    }

    /// Calls the export `name`.
    pub fn call(&mut self, name: &str, args: &[CoreValue]) -> Result<Vec<CoreValue>> {
        let func = self.func(name)?;
        let ty = func.ty(&self.store);
        let params: Vec<Val> = args.iter().map(|v| to_val(*v)).collect();
        if params.len() != ty.params().len() {
            bail!("`{name}` takes {} core values, not {}", ty.params().len(), params.len());
        }
        let mut results = vec![Val::I32(0); ty.results().len()];
        func.call(&mut self.store, &params, &mut results).map_err(|e| anyhow!("`{name}` trapped: {e:?}"))?;
        results.iter().map(from_val).collect()
    }

    /// Calls `cabi_post_<name>` with the results of `name`, when exported.
    pub fn post_return(&mut self, name: &str, results: &[CoreValue]) -> Result<()> {
        let post = format!("cabi_post_{name}");
        if self.has_export(&post) {
            self.call(&post, results)?;
        }
        Ok(())
    }

    fn memory(&self) -> Result<Memory> {
        self.memory.context("the module exports no memory named `memory`")
    }

    /// `len` bytes at `ptr` of `memory`; out of bounds is an error.
    pub fn read(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>> {
        let memory = self.memory()?;
        let mut bytes = vec![0u8; len as usize];
        memory
            .read(&self.store, ptr as usize, &mut bytes)
            .map_err(|_| anyhow!("{len} bytes at {ptr} are out of the module's memory"))?;
        Ok(bytes)
    }

    /// Writes `bytes` at `ptr` of `memory`.
    pub fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()> {
        let memory = self.memory()?;
        memory
            .write(&mut self.store, ptr as usize, bytes)
            .map_err(|_| anyhow!("{} bytes at {ptr} are out of the module's memory", bytes.len()))
    }

    /// `cabi_realloc(0, 0, align, size)`.
    pub fn alloc(&mut self, align: u32, size: u32) -> Result<u32> {
        let args = [CoreValue::I32(0), CoreValue::I32(0), CoreValue::I32(align as i32), CoreValue::I32(size as i32)];
        match self.call("cabi_realloc", &args)?.as_slice() {
            [CoreValue::I32(ptr)] => Ok(*ptr as u32),
            _ => bail!("`cabi_realloc` does not return one i32"),
        }
    }
}

fn to_val(v: CoreValue) -> Val {
    match v {
        CoreValue::I32(x) => Val::I32(x),
        CoreValue::I64(x) => Val::I64(x),
        CoreValue::F32(x) => Val::F32(x.to_bits()),
        CoreValue::F64(x) => Val::F64(x.to_bits()),
    }
}

fn from_val(v: &Val) -> Result<CoreValue> {
    Ok(match v {
        Val::I32(x) => CoreValue::I32(*x),
        Val::I64(x) => CoreValue::I64(*x),
        Val::F32(x) => CoreValue::F32(f32::from_bits(*x)),
        Val::F64(x) => CoreValue::F64(f64::from_bits(*x)),
        _ => bail!("a boundary function returned a reference, which the canonical ABI never does"),
    })
}
