//! Calling a module lowered with `--abi canonical`, at the level of core
//! values: one instance, its exports called with flat core values, its
//! `memory` read and written, its `cabi_realloc` called.
//!
//! Owns: instantiating such a module as a [`Guest`] (every import is a
//! function that traps naming itself: a canonical module's imports are its
//! component's, which no host here serves), core values, the call with the
//! module's `cabi_post_*` function after it, `cabi_realloc`.
//!
//! Does not own: the instance itself (the store, calls, poisoning,
//! deadlines and memory access are [`Guest`]'s, as for every module), and
//! what the core values mean (the canonical ABI's lifting and lowering of
//! component values: `karmem-bridge`'s `canonical_call`, which knows the
//! types from the module's `karmem:idl` section).

use anyhow::{Result, anyhow, bail};
use wasmtime::{Linker, Val};

use crate::guest::{Guest, GuestOptions, GuestState};
use crate::Runtime;

/// A core value of a flattened signature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CoreValue {
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
}

/// One instance of a canonical-ABI module: a [`Guest`] called with core
/// values.
#[derive(Debug)]
pub struct CanonicalInstance {
    guest: Guest,
}

impl CanonicalInstance {
    /// Compiles and instantiates `bytes`; `_initialize` runs when exported.
    pub fn new(runtime: &Runtime, bytes: &[u8]) -> Result<Self> {
        let loaded = runtime.compile(bytes)?;
        let module = loaded.module();
        let mut linker: Linker<GuestState> = runtime.linker();
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
        let guest = runtime.instantiate_with(&linker, &loaded, &GuestOptions::default())?;
        let mut this = CanonicalInstance { guest };
        if this.has_export("_initialize") {
            this.call("_initialize", &[])?;
        }
        Ok(this)
    }

    /// Whether the module exports a function `name`.
    pub fn has_export(&mut self, name: &str) -> bool {
        self.guest.has_export(name)
    }

    /// The names of the exported functions.
    pub fn export_names(&mut self) -> Vec<String> {
        let module = self.guest.module().module();
        module
            .exports()
            .filter(|e| e.ty().func().is_some())
            .map(|e| e.name().to_string())
            .collect()
    }

    /// Calls the export `name`.
    pub fn call(&mut self, name: &str, args: &[CoreValue]) -> Result<Vec<CoreValue>> {
        let ty = self
            .guest
            .module()
            .module()
            .get_export(name)
            .and_then(|e| e.func().cloned())
            .ok_or_else(|| anyhow!("the module exports no function `{name}`"))?;
        let params: Vec<Val> = args.iter().map(|v| to_val(*v)).collect();
        if params.len() != ty.params().len() {
            bail!("`{name}` takes {} core values, not {}", ty.params().len(), params.len());
        }
        let results = self.guest.call(name, &params)?;
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

    /// `len` bytes at `ptr` of `memory`; out of bounds is an error.
    pub fn read(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>> {
        // Checked before allocating: the length is the guest's word.
        let size = self.guest.memory_size()? as u64;
        if u64::from(ptr) + u64::from(len) > size {
            bail!("{len} bytes at {ptr} are out of the module's memory");
        }
        let mut bytes = vec![0u8; len as usize];
        self.guest.read_memory(u64::from(ptr), &mut bytes)?;
        Ok(bytes)
    }

    /// Writes `bytes` at `ptr` of `memory`.
    pub fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()> {
        self.guest.write_memory(u64::from(ptr), bytes)
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
