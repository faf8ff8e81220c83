//! Path (a): the Rust component on wasmtime's component runtime. A call
//! lowers the `list<reading>` into the guest (its `cabi_realloc` plus a copy
//! of 16 bytes per reading), runs `analyze`, lifts the `analysis` record and
//! runs post-return. Engine: wasmtime's default configuration.

use anyhow::{Context as _, Result, anyhow};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use crate::{Analysis, Reading};

wasmtime::component::bindgen!({
    path: "../guests/wit",
    world: "temperature-guest",
});

use exports::karmem::bench::temperature as wit;

/// One instance of `temperature-component.wasm`, ready to call.
pub struct ComponentPath {
    store: Store<()>,
    guest: TemperatureGuest,
    /// The readings as the bindings' record type, converted once.
    readings: Vec<wit::Reading>,
}

impl ComponentPath {
    pub fn new(component_bytes: &[u8]) -> Result<Self> {
        let engine = Engine::default();
        let component = Component::new(&engine, component_bytes)
            .map_err(|e| anyhow!("{e:#}"))
            .context("failed to compile `temperature-component.wasm`")?;
        let linker = Linker::new(&engine);
        let mut store = Store::new(&engine, ());
        let guest = TemperatureGuest::instantiate(&mut store, &component, &linker)
            .map_err(|e| anyhow!("{e:#}"))
            .context("failed to instantiate `temperature-component.wasm`")?;
        Ok(ComponentPath { store, guest, readings: Vec::new() })
    }

    /// Converts `readings` to the bindings' type (outside the timing: a host
    /// holding the data would hold it in this form).
    pub fn set_readings(&mut self, readings: &[Reading]) {
        self.readings = readings.iter().map(|r| wit::Reading { timestamp: r.timestamp, value: r.value }).collect();
    }

    /// One call of `analyze` with the readings set last.
    pub fn analyze(&mut self) -> Result<Analysis> {
        let got = self
            .guest
            .karmem_bench_temperature()
            .call_analyze(&mut self.store, &self.readings)
            .map_err(|e| anyhow!("{e:#}"))
            .context("`analyze` failed on the component runtime")?;
        Ok(Analysis { average: got.average, max: got.max, min: got.min })
    }
}
