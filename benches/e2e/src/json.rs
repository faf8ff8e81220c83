//! Path (d): JSON. A call serialises the readings with serde_json on the
//! host (into a reused buffer), copies the text into the guest, and the
//! guest parses it with serde_json and aggregates; the host reads back three
//! `f32`. Runs on karmem-runtime (a plain core module).

use anyhow::{Context as _, Result};
use karmem_runtime::{Guest, GuestOptions, Runtime};
use wasmtime::TypedFunc;

use crate::{Analysis, Reading};

#[derive(serde::Serialize)]
struct Batch<'a> {
    readings: &'a [Reading],
}

pub struct JsonPath {
    guest: Guest,
    alloc: TypedFunc<u32, u32>,
    analyze: TypedFunc<(u32, u32), u32>,
    text: Vec<u8>,
    readings: Vec<Reading>,
}

impl JsonPath {
    pub fn new(runtime: &Runtime, module_bytes: &[u8]) -> Result<Self> {
        let module = runtime.load(module_bytes).context("failed to load `temperature-json.wasm`")?;
        let mut guest = runtime.instantiate(&module, &GuestOptions::default())?;
        let alloc = guest.typed_func("json_alloc")?;
        let analyze = guest.typed_func("analyze_json")?;
        Ok(JsonPath { guest, alloc, analyze, text: Vec::new(), readings: Vec::new() })
    }

    pub fn set_readings(&mut self, readings: &[Reading]) {
        self.readings = readings.to_vec();
    }

    /// Serialise, copy in, parse and aggregate in the guest, read back.
    pub fn analyze(&mut self) -> Result<Analysis> {
        self.text.clear();
        serde_json::to_writer(&mut self.text, &Batch { readings: &self.readings }).context("failed to write JSON")?;
        let len = u32::try_from(self.text.len()).context("JSON text too long")?;
        let ptr = self.guest.call_typed("json_alloc", &self.alloc, len)?;
        self.guest.write_memory(u64::from(ptr), &self.text)?;
        let out = self.guest.call_typed("analyze_json", &self.analyze, (ptr, len))?;
        let mut words = [[0u8; 4]; 3];
        self.guest.read_memory(u64::from(out), words.as_flattened_mut())?;
        let [average, max, min] = words.map(f32::from_le_bytes);
        Ok(Analysis { average, max, min })
    }
}
