//! A tiny guest around the generated transcoders, run in wasmtime (core):
//! a scaffold module (memory, a bump `cabi_realloc`/`KarmemAlloc` that fills
//! fresh memory with 0xAA so unzeroed padding shows) plus the generated
//! message reader and writer of one root type.
#![allow(dead_code)]

use anyhow::{Context, Result, anyhow};
use karmem_adapters::canon::{StringEncoding, abi_type};
use karmem_adapters::transcode::{Env, TranscodeOptions, Transcoder};
use karmem_format::layout::{Layout, TypeId};
use karmem_format::{Limits, Value};
use wasmtime::{Engine, Instance, Memory, Module, Store, TypedFunc};

use super::canonical::{self, Guest};

pub const SCAFFOLD: &str = r#"
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func $alloc (export "alloc") (param $size i32) (param $align i32) (result i32)
    (local $ptr i32) (local $end i32)
    global.get $heap local.get $align i32.add i32.const 1 i32.sub
    i32.const 0 local.get $align i32.sub i32.and local.set $ptr
    local.get $ptr local.get $size i32.add local.set $end
    block $ok
      loop $grow
        local.get $end memory.size i32.const 16 i32.shl i32.le_u br_if $ok
        i32.const 1 memory.grow i32.const -1 i32.eq if unreachable end
        br $grow
      end
    end
    local.get $end global.set $heap
    local.get $ptr i32.const 0xAA local.get $size memory.fill
    local.get $ptr)
  (func (export "free") (param i32 i32 i32))
  (func (export "cabi_realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $new i32) (result i32)
    (local $ptr i32)
    local.get $new local.get $align call $alloc local.set $ptr
    local.get $old if
      local.get $ptr local.get $old
      local.get $new local.get $old_size local.get $new local.get $old_size i32.lt_u select
      memory.copy
    end
    local.get $ptr)
)
"#;

/// What the split scaffold adds: a second memory for messages, exported as
/// `KarmemMemory` (a Karmem edge memory), with its own bump `alloc_msg`.
const EDGE_PARTS: &str = r#"
  (memory $msg (export "KarmemMemory") 1)
  (global $msg_heap (mut i32) (i32.const 1024))
  (func (export "alloc_msg") (param $size i32) (param $align i32) (result i32)
    (local $ptr i32) (local $end i32)
    global.get $msg_heap local.get $align i32.add i32.const 1 i32.sub
    i32.const 0 local.get $align i32.sub i32.and local.set $ptr
    local.get $ptr local.get $size i32.add local.set $end
    block $ok
      loop $grow
        local.get $end memory.size $msg i32.const 16 i32.shl i32.le_u br_if $ok
        i32.const 1 memory.grow $msg i32.const -1 i32.eq if unreachable end
        br $grow
      end
    end
    local.get $end global.set $msg_heap
    local.get $ptr i32.const 0xAA local.get $size memory.fill $msg
    local.get $ptr)
)
"#;

/// The scaffold plus `read`, `write` and `init` for `root`.
pub fn build(layout: &Layout, root: TypeId, encoding: StringEncoding) -> Result<Vec<u8>> {
    build_with(layout, root, TranscodeOptions { string_encoding: encoding, ..TranscodeOptions::default() })
}

/// [`build`] with messages in a memory of their own (`KarmemMemory`), apart
/// from the canonical values in `memory`, as with a Karmem edge memory.
pub fn build_split(layout: &Layout, root: TypeId, encoding: StringEncoding) -> Result<Vec<u8>> {
    let options = TranscodeOptions { string_encoding: encoding, ..TranscodeOptions::default() };
    build_in(layout, root, options, true)
}

/// [`build`] with every option given.
pub fn build_with(layout: &Layout, root: TypeId, options: TranscodeOptions) -> Result<Vec<u8>> {
    build_in(layout, root, options, false)
}

fn build_in(layout: &Layout, root: TypeId, options: TranscodeOptions, split: bool) -> Result<Vec<u8>> {
    let scaffold = if split {
        let end = SCAFFOLD.rfind(')').context("scaffold")?;
        wat::parse_str(format!("{}{EDGE_PARTS}", &SCAFFOLD[..end]))?
    } else {
        wat::parse_str(SCAFFOLD)?
    };
    let mut module = walrus::Module::from_buffer(&scaffold).map_err(|e| anyhow!("{e:#}"))?;
    let memory_named = |module: &walrus::Module, name: &str| {
        module.exports.iter().find(|e| e.name == name).and_then(|e| match e.item {
            walrus::ExportItem::Memory(m) => Some(m),
            _ => None,
        })
    };
    let guest = memory_named(&module, "memory").context("no memory")?;
    let messages = if split { memory_named(&module, "KarmemMemory").context("no KarmemMemory")? } else { guest };
    let func = |name: &str| module.exports.get_func(name).map_err(|e| anyhow!("{e:#}"));
    let alloc = func(if split { "alloc_msg" } else { "alloc" })?;
    let realloc = func("cabi_realloc")?;
    let env = Env { memory: messages, realloc, alloc, free: func("free")? };
    let mut transcoder = Transcoder::new(&mut module, layout, env, options);
    if split {
        transcoder.set_boundary(options.string_encoding, realloc, guest);
    }
    let read = transcoder.message_reader(root)?;
    let write = transcoder.message_writer(root)?;
    let init = transcoder.finish();
    module.exports.add("read", read);
    module.exports.add("write", write);
    module.exports.add("init", init);
    let bytes = module.emit_wasm();
    wasmparser::Validator::new().validate_all(&bytes).context("the generated module does not validate")?;
    Ok(bytes)
}

pub struct Runner {
    store: Store<()>,
    /// The canonical values' memory, and the messages' (the same unless
    /// built with [`build_split`]).
    memory: Memory,
    messages: Memory,
    alloc: TypedFunc<(i32, i32), i32>,
    alloc_msg: TypedFunc<(i32, i32), i32>,
    read: TypedFunc<(i32, i32, i32), ()>,
    write: TypedFunc<i32, i64>,
    pub encoding: StringEncoding,
}

impl Guest for Runner {
    fn alloc(&mut self, size: u32, align: u32) -> Result<u32> {
        Ok(self.alloc.call(&mut self.store, (size as i32, align as i32))? as u32)
    }

    fn mem(&mut self) -> &mut [u8] {
        self.memory.data_mut(&mut self.store)
    }
}

impl Runner {
    pub fn new(engine: &Engine, wasm: &[u8], encoding: StringEncoding) -> Result<Runner> {
        let module = Module::new(engine, wasm)?;
        let mut store = Store::new(engine, ());
        let instance = Instance::new(&mut store, &module, &[])?;
        let memory = instance.get_memory(&mut store, "memory").context("memory")?;
        let messages = instance.get_memory(&mut store, "KarmemMemory").unwrap_or(memory);
        let alloc = instance.get_typed_func(&mut store, "alloc")?;
        let alloc_msg = match instance.get_typed_func(&mut store, "alloc_msg") {
            Ok(f) => f,
            Err(_) => alloc.clone(),
        };
        let read = instance.get_typed_func(&mut store, "read")?;
        let write = instance.get_typed_func(&mut store, "write")?;
        instance.get_typed_func::<(), ()>(&mut store, "init")?.call(&mut store, ())?;
        Ok(Runner { store, memory, messages, alloc, alloc_msg, read, write, encoding })
    }

    /// Feeds `message` to the reader; returns the canonical address.
    pub fn read_bytes(&mut self, layout: &Layout, root: TypeId, message: &[u8]) -> Result<u32> {
        let ptr = self.alloc_msg.call(&mut self.store, (message.len().max(1) as i32, 64))? as u32;
        let at = ptr as usize;
        self.messages.data_mut(&mut self.store)[at..at + message.len()].copy_from_slice(message);
        let shape = abi_type(layout, root)?;
        let dst = self.alloc(shape.size().max(1), shape.align())?;
        self.read.call(&mut self.store, (ptr as i32, message.len() as i32, dst as i32))?;
        Ok(dst)
    }

    /// Calls the writer on canonical bytes at `src`.
    pub fn write_raw(&mut self, src: u32) -> Result<u64> {
        Ok(self.write.call(&mut self.store, src as i32)? as u64)
    }

    /// Karmem message (from the format crate) -> wasm reader -> canonical
    /// memory -> `Value` (read per the canonical ABI).
    pub fn karmem_to_canonical(&mut self, layout: &Layout, root: TypeId, value: &Value) -> Result<Value> {
        let message = karmem_format::value::encode(layout, root, value)?;
        let dst = self.read_bytes(layout, root, message.as_slice())?;
        let encoding = self.encoding;
        canonical::read(self.mem(), layout, root, dst, encoding)
    }

    /// `Value` -> canonical memory -> wasm writer -> Karmem message ->
    /// `Value` (decoded, after validation, by the format crate).
    pub fn canonical_to_karmem(&mut self, layout: &Layout, root: TypeId, value: &Value) -> Result<(Value, Vec<u8>)> {
        let shape = abi_type(layout, root)?;
        let src = self.alloc(shape.size().max(1), shape.align())?;
        let encoding = self.encoding;
        canonical::write(self, layout, root, src, value, encoding)?;
        let packed = self.write.call(&mut self.store, src as i32)? as u64;
        let (ptr, len) = ((packed & 0xFFFF_FFFF) as usize, (packed >> 32) as usize);
        let bytes = self.messages.data(&self.store).get(ptr..ptr + len).context("message out of bounds")?.to_vec();
        let decoded = karmem_format::value::decode(layout, root, &bytes, &Limits::default())
            .map_err(|e| anyhow!("the written message is invalid: {e}"))?;
        Ok((decoded, bytes))
    }
}
