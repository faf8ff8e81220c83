//! Path (b): `temperature-component.wasm` lowered to one core module with the
//! Karmem ABI, by the same library calls `karmem-bridge lower` makes
//! (`karmem-core-lowering` to the canonical boundary, `karmem-adapters` for
//! the ABI, the world's KarmemIDL from `karmem-wit-import`), at setup.
//!
//! A call: encode the argument message with the generated builder (reused
//! buffer), copy it into a buffer the host got from `KarmemAlloc` at setup
//! (reused, as docs/ABI.md allows), call `temperature.analyze(ptr, len)`
//! (inside the guest: the adapter decodes the message into a canonical
//! `list<reading>` through `cabi_realloc`, runs the component's code, encodes
//! the result message), copy the result message out and decode it.

use anyhow::{Context as _, Result};
use karmem_format::Builder;
use karmem_runtime::{Guest, GuestOptions, Runtime};
use wasmtime::TypedFunc;

use crate::{Analysis, Reading, abi, decode_results, encode_params};

/// The Karmem-ABI module of `component`, as `karmem-bridge lower` makes it.
pub fn lower(component: &[u8]) -> Result<Vec<u8>> {
    let loaded = karmem_wit_import::load_wasm(component, None).context("failed to read the component's world")?;
    let imported = karmem_wit_import::import_world(&loaded.resolve, loaded.world)?;
    let options = karmem_core_lowering::Options {
        abi: karmem_core_lowering::Abi::Canonical,
        multi_memory: false,
        idl: Some(karmem_idl::print(&imported.file)),
    };
    let canonical = karmem_core_lowering::lower(component, &options).context("failed to lower the component")?;
    let world = karmem_adapters::abi::World::from_component(component)?;
    karmem_adapters::abi::karmem_abi(&canonical, &world, &karmem_adapters::abi::Options::default())
        .context("failed to put the Karmem ABI on the lowered module")
}

pub struct LoweredPath {
    guest: Guest,
    export: String,
    analyze: TypedFunc<(u32, u32), i64>,
    builder: Builder,
    /// (ptr, capacity) of the argument buffer from `KarmemAlloc`.
    buffer: (u32, u32),
    result: karmem_format::AlignedBuf,
    readings: Vec<Reading>,
}

impl LoweredPath {
    /// Instantiates the lowered module `lowered` with an argument buffer of
    /// `capacity` bytes.
    pub fn new(runtime: &Runtime, lowered: &[u8], capacity: u32) -> Result<Self> {
        let module = runtime.load(lowered).context("failed to load the lowered module")?;
        let mut guest = runtime.instantiate(&module, &GuestOptions::default())?;
        let interface = abi::start(&mut guest)?;
        let (export, _) = interface.export_of("analyze")?;
        let analyze = guest.typed_func(&export)?;
        let alloc = guest.typed_func::<(u32, u32), u32>("KarmemAlloc")?;
        let ptr = guest.call_typed("KarmemAlloc", &alloc, (capacity, 64))?;
        Ok(LoweredPath {
            guest,
            export,
            analyze,
            builder: Builder::with_capacity(capacity as usize),
            buffer: (ptr, capacity),
            result: karmem_format::AlignedBuf::new(),
            readings: Vec::new(),
        })
    }

    pub fn set_readings(&mut self, readings: &[Reading]) {
        self.readings = readings.to_vec();
    }

    /// Encode, copy in, call, copy the result out, decode.
    pub fn analyze(&mut self) -> Result<Analysis> {
        encode_params(&mut self.builder, &self.readings)?;
        let message = self.builder.as_bytes();
        let len = u32::try_from(message.len())?;
        anyhow::ensure!(len <= self.buffer.1, "argument message of {len} bytes exceeds the {}-byte buffer", self.buffer.1);
        self.guest.write_memory(u64::from(self.buffer.0), message)?;
        let packed = self.guest.call_typed(&self.export, &self.analyze, (self.buffer.0, len))?;
        abi::read_buffer(&mut self.guest, packed, &mut self.result)?;
        decode_results(&self.result)
    }
}
