//! A Karmem-ABI host for tests, written from docs/ABI.md: it initialises a
//! guest, reads its descriptors, calls its functions with argument messages
//! it allocates with `KarmemAlloc` (and frees after the call), and serves
//! its imports `karmem:<interface>`/`<function>` by decoding the argument
//! message (validated: the guest is untrusted) and writing the result
//! message into guest memory allocated with the guest's `KarmemAlloc`.
#![allow(dead_code)]

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use karmem_adapters::abi::{Options, World, descriptor_layout, karmem_abi};
use karmem_format::layout::Layout;
use karmem_format::{Limits, Value};
use karmem_wit_import::Side;
use wasmtime::{Caller, Engine, Extern, FuncType, Instance, Linker, Memory, Module, Store, Val, ValType};

pub type Handler = Box<dyn FnMut(&str, &str, &Value) -> Result<(Value, Option<String>)> + Send>;

pub struct State {
    layout: Arc<Layout>,
    handler: Handler,
    log: Vec<String>,
}

pub struct Host {
    pub layout: Arc<Layout>,
    pub world: World,
    pub bytes: Vec<u8>,
    store: Store<State>,
    instance: Instance,
    memory: Memory,
}

pub fn rec(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(fields.into_iter().map(|(n, v)| (n.to_string(), v)).collect())
}

pub fn s(text: &str) -> Value {
    Value::String(text.to_string())
}

fn packed(value: i64) -> (usize, usize) {
    let value = value as u64;
    ((value & 0xFFFF_FFFF) as usize, (value >> 32) as usize)
}

/// The guest's message memory: `KarmemMemory` when it exports one, else
/// `memory` (docs/ABI.md §2).
fn message_memory(caller: &mut Caller<'_, State>) -> Option<wasmtime::Memory> {
    caller.get_export("KarmemMemory").or_else(|| caller.get_export("memory")).and_then(Extern::into_memory)
}

/// Copies `message` into the guest with its `KarmemAlloc`; returns the packed buffer.
fn put_message(caller: &mut Caller<'_, State>, message: &[u8]) -> Result<i64> {
    if message.is_empty() {
        return Ok(0);
    }
    let alloc = caller
        .get_export("KarmemAlloc")
        .and_then(Extern::into_func)
        .context("no KarmemAlloc")?
        .typed::<(i32, i32), i32>(&mut *caller)?;
    let ptr = alloc.call(&mut *caller, (message.len() as i32, 64))? as usize;
    let memory = message_memory(caller).context("no memory")?;
    memory.data_mut(&mut *caller)[ptr..ptr + message.len()].copy_from_slice(message);
    Ok(((message.len() as i64) << 32) | ptr as i64)
}

/// Serves one import call: argument message in, result message out.
fn serve(caller: &mut Caller<'_, State>, iname: &str, fname: &str, params: &[Val]) -> Result<i64> {
    let (ptr, len) = match params {
        [Val::I32(p), Val::I32(l)] => (*p as u32 as usize, *l as u32 as usize),
        _ => bail!("bad import arguments"),
    };
    let memory = message_memory(caller).context("memory")?;
    let message = memory.data(&*caller).get(ptr..ptr + len).context("argument buffer")?.to_vec();
    let layout = caller.data().layout.clone();
    let fl = layout.function(iname, fname).context("function layout")?;
    let args = karmem_format::value::decode(&layout, fl.params, &message, &Limits::default())
        .map_err(|e| anyhow!("invalid argument message from the guest: {e}"))?;
    let (ret, logged) = (caller.data_mut().handler)(iname, fname, &args)?;
    if let Some(line) = logged {
        caller.data_mut().log.push(line);
    }
    let out = karmem_format::value::encode(&layout, fl.results, &ret).map_err(|e| anyhow!("{e}"))?;
    let out = if matches!(&ret, Value::Record(f) if f.is_empty()) { Vec::new() } else { out.as_slice().to_vec() };
    put_message(caller, &out)
}

impl Host {
    pub fn new(
        wit: &str,
        canonical: &[u8],
        handler: impl FnMut(&str, &str, &Value) -> Result<(Value, Option<String>)> + Send + 'static,
    ) -> Result<Host> {
        Host::with_options(wit, canonical, &Options::default(), handler)
    }

    /// [`Host::new`] with the generator's options (an edge memory, say).
    pub fn with_options(
        wit: &str,
        canonical: &[u8],
        options: &Options,
        handler: impl FnMut(&str, &str, &Value) -> Result<(Value, Option<String>)> + Send + 'static,
    ) -> Result<Host> {
        let loaded = karmem_wit_import::load_wit_text("demo.wit", wit, None)?;
        let world = World::from_wit(&loaded.resolve, loaded.world)?;
        let bytes = karmem_abi(canonical, &world, options)?;
        Host::from_bytes(world, bytes, Box::new(handler))
    }

    pub fn from_bytes(world: World, bytes: Vec<u8>, handler: Handler) -> Result<Host> {
        let layout = Arc::new(Layout::new(&world.schema).map_err(|e| anyhow!("{e}"))?);
        let engine = Engine::default();
        let module = Module::new(&engine, &bytes)?;
        let mut linker: Linker<State> = Linker::new(&engine);
        for iface in world.interfaces.iter().filter(|i| i.side == Side::Import) {
            for function in &iface.functions {
                let (iname, fname) = (iface.name.clone(), function.name.clone());
                let ty = FuncType::new(&engine, [ValType::I32, ValType::I32], [ValType::I64]);
                linker.func_new(&format!("karmem:{iname}"), &fname.clone(), ty, move |mut caller, params, results| {
                    let served = serve(&mut caller, &iname, &fname, params);
                    match served {
                        Ok(buffer) => {
                            results[0] = Val::I64(buffer);
                            Ok(())
                        }
                        Err(error) => Err(wasmtime::Error::msg(format!("{error:#}"))),
                    }
                })?;
            }
        }
        let mut store = Store::new(&engine, State { layout: layout.clone(), handler, log: Vec::new() });
        let instance = linker.instantiate(&mut store, &module)?;
        // the message memory (docs/ABI.md §2): `KarmemMemory` when exported
        let memory = match instance.get_memory(&mut store, "KarmemMemory") {
            Some(edge) => edge,
            None => instance.get_memory(&mut store, "memory").context("no exported memory")?,
        };
        Ok(Host { layout, world, bytes, store, instance, memory })
    }

    pub fn init(&mut self) -> Result<u64> {
        let init = self.instance.get_typed_func::<(), i64>(&mut self.store, "KarmemInit")?;
        Ok(init.call(&mut self.store, ())? as u64)
    }

    fn bytes_at(&mut self, packed_buffer: i64) -> Result<Vec<u8>> {
        let (ptr, len) = packed(packed_buffer);
        Ok(self.memory.data(&self.store).get(ptr..ptr + len).context("buffer out of bounds")?.to_vec())
    }

    pub fn descriptor(&mut self, entry: &str, index: i32) -> Result<Value> {
        let f = self.instance.get_typed_func::<i32, i64>(&mut self.store, entry)?;
        let buffer = f.call(&mut self.store, index)?;
        let bytes = self.bytes_at(buffer)?;
        let (layout, root) = descriptor_layout()?;
        karmem_format::value::decode(layout, root, &bytes, &Limits::default()).map_err(|e| anyhow!("{e}"))
    }

    pub fn custom_sections(&self) -> Vec<(String, Vec<u8>)> {
        wasmparser::Parser::new(0)
            .parse_all(&self.bytes)
            .filter_map(|p| match p {
                Ok(wasmparser::Payload::CustomSection(c)) => Some((c.name().to_string(), c.data().to_vec())),
                _ => None,
            })
            .collect()
    }

    pub fn exports(&self) -> Vec<String> {
        let engine = self.store.engine();
        Module::new(engine, &self.bytes).map(|m| m.exports().map(|e| e.name().to_string()).collect()).unwrap_or_default()
    }

    pub fn encode_params(&self, iface: &str, function: &str, args: &Value) -> Result<Vec<u8>> {
        Ok(karmem_format::value::encode_params(&self.layout, iface, function, args)
            .map_err(|e| anyhow!("{e}"))?
            .as_slice()
            .to_vec())
    }

    /// Allocates the argument buffer in the guest, calls `name`, frees the
    /// buffer, and decodes the result message of `name` (`iface.function`).
    pub fn call_bytes(&mut self, name: &str, message: &[u8]) -> Result<Value> {
        let (iface, function) = name.split_once('.').context("export names are `interface.function`")?;
        let f = self.instance.get_typed_func::<(i32, i32), i64>(&mut self.store, name)?;
        self.call_with(iface, function, message, |store, ptr, len| Ok(f.call(store, (ptr, len))?))
    }

    fn call_with(
        &mut self,
        iface: &str,
        function: &str,
        message: &[u8],
        call: impl FnOnce(&mut Store<State>, i32, i32) -> Result<i64>,
    ) -> Result<Value> {
        let alloc = self.instance.get_typed_func::<(i32, i32), i32>(&mut self.store, "KarmemAlloc")?;
        let free = self.instance.get_typed_func::<(i32, i32, i32), ()>(&mut self.store, "KarmemFree")?;
        let ptr = alloc.call(&mut self.store, (message.len() as i32, 64))?;
        let at = ptr as u32 as usize;
        self.memory.data_mut(&mut self.store)[at..at + message.len()].copy_from_slice(message);
        let result = call(&mut self.store, ptr, message.len() as i32)?;
        free.call(&mut self.store, (ptr, message.len() as i32, 64))?;
        let bytes = self.bytes_at(result)?;
        let fl = self.layout.function(iface, function).context("function layout")?;
        karmem_format::value::decode(&self.layout, fl.results, &bytes, &Limits::default())
            .map_err(|e| anyhow!("invalid result message: {e}"))
    }

    /// Writes `message` at guest address `at` (an interface memory region),
    /// calls `name`, and returns the result and the result buffer's address.
    pub fn call_at(&mut self, name: &str, message: &[u8], at: u32) -> Result<(Value, usize)> {
        let (iface, function) = name.split_once('.').context("export names are `interface.function`")?;
        let f = self.instance.get_typed_func::<(i32, i32), i64>(&mut self.store, name)?;
        let start = at as usize;
        self.memory.data_mut(&mut self.store)[start..start + message.len()].copy_from_slice(message);
        let result = f.call(&mut self.store, (at as i32, message.len() as i32))?;
        let bytes = self.bytes_at(result)?;
        let fl = self.layout.function(iface, function).context("function layout")?;
        let value = karmem_format::value::decode(&self.layout, fl.results, &bytes, &Limits::default())
            .map_err(|e| anyhow!("invalid result message: {e}"))?;
        Ok((value, packed(result).0))
    }

    pub fn call(&mut self, iface: &str, function: &str, args: Value) -> Result<Value> {
        let message = self.encode_params(iface, function, &args)?;
        self.call_bytes(&format!("{iface}.{function}"), &message)
    }

    pub fn call_by_id(&mut self, id: i32, iface: &str, function: &str, args: Value) -> Result<Value> {
        let message = self.encode_params(iface, function, &args).unwrap_or_default();
        let f = self.instance.get_typed_func::<(i32, i32, i32), i64>(&mut self.store, "KarmemCall")?;
        self.call_with(iface, function, &message, |store, ptr, len| Ok(f.call(store, (id, ptr, len))?))
    }

    pub fn call_raw_i32(&mut self, name: &str) -> Result<i32> {
        let f = self.instance.get_typed_func::<(), i32>(&mut self.store, name)?;
        Ok(f.call(&mut self.store, ())?)
    }

    pub fn log(&self) -> Vec<String> {
        self.store.data().log.clone()
    }

    /// The size of the message memory.
    pub fn memory_size(&self) -> usize {
        self.memory.data_size(&self.store)
    }

    /// The size of the guest's exported `memory`.
    pub fn guest_memory_size(&mut self) -> Result<usize> {
        let memory = self.instance.get_memory(&mut self.store, "memory").context("no `memory`")?;
        Ok(memory.data_size(&self.store))
    }
}
