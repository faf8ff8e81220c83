//! Paths (c) and (e): the Karmem-native guest `temperature-karmem.wasm`.
//!
//! Setup: one shared region `batch` (a memfd, karmem-runtime's
//! [`SharedRegion`]); each consumer is instantiated, started
//! (`KarmemInit`: the guest reserves the region's pages and reports their
//! offset in its descriptor) and gets the region mapped read-only at that
//! offset ([`Guest::map_shared`]). The host encodes the argument message
//! once into the region ([`NativePath::share`]): that is the data "already
//! shared", outside the timing. [`NativePath::build_in_place`] builds it in
//! the region itself instead (what (c) + host encode times).
//!
//! A call ([`NativePath::analyze`]): `temperature.analyze(offset, len)` on one
//! consumer (inside the guest: root and SoA directory checks, the `value`
//! column as a `&[f32]` in place, SIMD sum/max/min, a result message built),
//! then the host copies the result message out and decodes it. Path (e) makes
//! that call on each of 8 consumers of the same region.

use std::sync::Arc;

use anyhow::{Context as _, Result, bail, ensure};
use karmem_format::Builder;
use karmem_format::value::Value;
use karmem_runtime::{Access, Guest, GuestOptions, RegionPlacement, Runtime, SharedRegion};
use wasmtime::TypedFunc;

use crate::{Analysis, Reading, abi, decode_results, encode_params};

/// The Karmem-native schema (the paper's Figure 32 structs and the interface).
pub const SCHEMA: &str = include_str!("../../guests/temperature.km");
/// The `offset` the descriptor is encoded with; the guest's `KarmemInit`
/// patches in the real one (the guest's `REGION_OFFSET_SENTINEL`).
pub const REGION_OFFSET_SENTINEL: u32 = 0x4b4d_0000;

/// Type hash of `temperature.analyze` (FORMAT.md §11) from [`SCHEMA`].
pub fn analyze_type_hash() -> Result<u64> {
    let schema = karmem_idl::load(SCHEMA, "temperature.km")?;
    let layout = karmem_format::Layout::new(&schema).map_err(|e| anyhow::anyhow!("{e}"))?;
    layout.function_hash("temperature", "analyze").context("`temperature.analyze` is missing from the schema")
}

/// The descriptor message the guest embeds (`temperature-karmem/descriptor.bin`).
pub fn descriptor() -> Result<Vec<u8>> {
    let (layout, root) = karmem_adapters::abi::descriptor_layout()?;
    let record = |fields: Vec<(&str, Value)>| Value::Record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
    let value = record(vec![
        ("package", Value::String(String::new())),
        ("name", Value::String("temperature".into())),
        ("pattern", Value::U8(0)),
        (
            "functions",
            Value::List(vec![record(vec![
                ("name", Value::String("analyze".into())),
                ("id", Value::U32(0)),
                ("type_hash", Value::U64(analyze_type_hash()?)),
            ])]),
        ),
        (
            "memories",
            Value::List(vec![record(vec![
                ("name", Value::String("batch".into())),
                ("access", Value::U8(1)),
                ("offset", Value::U32(REGION_OFFSET_SENTINEL)),
                ("pages", Value::U32(4)),
            ])]),
        ),
        // ABI 0.2: the WIT identity; a Karmem-native interface has none.
        ("wit_package", Value::String(String::new())),
        ("wit_interface", Value::String(String::new())),
        ("wit_version", Value::String(String::new())),
    ]);
    let bytes = karmem_format::value::encode(layout, root, &value).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(bytes.to_vec())
}

struct Consumer {
    guest: Guest,
    analyze: TypedFunc<(u32, u32), i64>,
    /// Where the region is mapped in this consumer's memory.
    offset: u32,
}

pub struct NativePath {
    region: Arc<SharedRegion>,
    consumers: Vec<Consumer>,
    builder: Builder,
    /// The in-place builder of [`NativePath::build_in_place`], made at its
    /// first use.
    placed: Option<Builder>,
    /// Length of the message in the region.
    len: u32,
    result: karmem_format::AlignedBuf,
}

impl NativePath {
    /// `consumers` instances of `module_bytes`, each mapping one shared
    /// `batch` region read-only.
    pub fn new(runtime: &Runtime, module_bytes: &[u8], consumers: usize) -> Result<Self> {
        let module = runtime.load(module_bytes).context("failed to load `temperature-karmem.wasm`")?;
        let hash = analyze_type_hash()?;
        let mut region = None;
        let mut list = Vec::new();
        for k in 0..consumers {
            let mut guest = runtime.instantiate(&module, &GuestOptions::default())?;
            let interface = abi::start(&mut guest).with_context(|| format!("consumer {k}"))?;
            let (export, got_hash) = interface.export_of("analyze")?;
            ensure!(got_hash == hash, "`{export}` has type hash {got_hash:#x}, the schema says {hash:#x}");
            let Some((name, access, offset, pages)) = interface.memories.first().cloned() else {
                bail!("consumer {k} declares no memory");
            };
            ensure!(access == 1, "memory `{name}` should be read-only for the guest, its access is {access}");
            let region = match &region {
                Some(region) => Arc::clone(region),
                None => {
                    let created = SharedRegion::new(&name, pages)?;
                    region = Some(Arc::clone(&created));
                    created
                }
            };
            guest.map_shared(&RegionPlacement::new(&region, u64::from(offset), Access::Read))?;
            let analyze = guest.typed_func(&export)?;
            list.push(Consumer { guest, analyze, offset });
        }
        let region = region.context("no consumers")?;
        Ok(NativePath {
            region,
            consumers: list,
            builder: Builder::new(),
            placed: None,
            len: 0,
            result: karmem_format::AlignedBuf::new(),
        })
    }

    /// Builds the message for `readings` straight into the region through
    /// the host's mapping of it (karmem-runtime's `SharedRegion::builder`,
    /// made once and reset for every message): no heap buffer, no copy, no
    /// syscall. Every consumer sees it.
    #[allow(unsafe_code)]
    pub fn build_in_place(&mut self, readings: &[Reading]) -> Result<()> {
        let builder = match &mut self.placed {
            Some(builder) => builder,
            None => {
                let capacity = self.region.byte_len();
                // SAFETY: consumers run only inside `analyze`, which takes
                // `&mut self` and so never overlaps a builder call, and no
                // reference lent by the builder outlives this function; the
                // region is this path's alone, and `share` writes it only
                // between builder calls.
                self.placed.insert(unsafe { self.region.builder(0, capacity)? })
            }
        };
        encode_params(builder, readings).context("the message does not fit the `batch` region")?;
        self.len = builder.len();
        Ok(())
    }

    /// Encodes `readings` on the heap and copies the message into the
    /// region with `SharedRegion::write` (one `pwrite`); [`NativePath::build_in_place`]
    /// does without both.
    pub fn share(&mut self, readings: &[Reading]) -> Result<()> {
        encode_params(&mut self.builder, readings)?;
        let message = self.builder.as_bytes();
        self.region.write(0, message).context("the message does not fit the `batch` region")?;
        self.len = u32::try_from(message.len())?;
        Ok(())
    }

    pub fn consumers(&self) -> usize {
        self.consumers.len()
    }

    /// Total bytes the host copied into consumers' private memories (0: the
    /// message reaches them only through the region).
    pub fn host_bytes_written(&self) -> u64 {
        self.consumers.iter().map(|c| c.guest.host_bytes_written()).sum()
    }

    /// `temperature.analyze` on consumer `k`, reading the shared message.
    pub fn analyze(&mut self, k: usize) -> Result<Analysis> {
        let Some(consumer) = self.consumers.get_mut(k) else { bail!("no consumer {k}") };
        let export = "temperature.analyze";
        let packed = consumer.guest.call_typed(export, &consumer.analyze, (consumer.offset, self.len))?;
        abi::read_buffer(&mut consumer.guest, packed, &mut self.result)?;
        decode_results(&self.result)
    }
}
