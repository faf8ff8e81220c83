//! Helpers shared by the integration tests.

use anyhow::{Context, Result};
use karmem_runtime::{LoadedModule, Runtime, RuntimeConfig};

/// Offset of the shared window in `MESSAGE_MODULE`'s memory (page 1).
pub const WINDOW_OFFSET: u64 = 0x10000;

/// A guest that can produce, check and poke a message anywhere in its memory.
/// Memory: 18 pages, exported; the tests place windows from page 1.
pub const MESSAGE_MODULE: &str = r#"
(module
  (memory (export "memory") 18)
  ;; Writes `seed + i` as an i64 at every 8-byte step of [ptr, ptr + len).
  (func (export "produce") (param $ptr i32) (param $len i32) (param $seed i64)
    (local $i i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (i64.store (i32.add (local.get $ptr) (local.get $i))
                   (i64.add (local.get $seed) (i64.extend_i32_u (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br $next))))
  ;; Wrapping sum of the i64s in [ptr, ptr + len).
  (func (export "checksum") (param $ptr i32) (param $len i32) (result i64)
    (local $i i32) (local $sum i64)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $sum (i64.add (local.get $sum)
                                 (i64.load (i32.add (local.get $ptr) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br $next)))
    (local.get $sum))
  (func (export "peek") (param $ptr i32) (result i64) (i64.load (local.get $ptr)))
  (func (export "poke") (param $ptr i32) (param $value i64)
    (i64.store (local.get $ptr) (local.get $value)))
  (func (export "grow") (param $pages i32) (result i32) (memory.grow (local.get $pages))))
"#;

/// What `produce(ptr, len, seed)` followed by `checksum(ptr, len)` returns.
pub fn expected_checksum(len: u32, seed: i64) -> i64 {
    (0..len).step_by(8).fold(0i64, |sum, i| {
        sum.wrapping_add(seed.wrapping_add(i64::from(i)))
    })
}

pub fn runtime() -> Result<Runtime> {
    Runtime::new(RuntimeConfig::default())
}

pub fn load(runtime: &Runtime, wat: &str) -> Result<LoadedModule> {
    runtime.load(&wat::parse_str(wat)?)
}

/// The largest core module nested in a component (a wit-bindgen component's
/// main module), as standalone bytes.
pub fn largest_core_module(component: &[u8]) -> Option<Vec<u8>> {
    let mut largest: Option<&[u8]> = None;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        if let Ok(wasmparser::Payload::ModuleSection {
            unchecked_range, ..
        }) = payload
        {
            let bytes = component.get(unchecked_range)?;
            if largest.is_none_or(|l| bytes.len() > l.len()) {
                largest = Some(bytes);
            }
        }
    }
    largest.map(<[u8]>::to_vec)
}

/// The main core module of a committed fixture component (a Rust guest).
pub fn fixture_core_module(component: &str) -> Result<Vec<u8>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/components")
        .join(component);
    let bytes = std::fs::read(&path)
        .with_context(|| format!("failed to read fixture `{}`", path.display()))?;
    largest_core_module(&bytes)
        .with_context(|| format!("fixture `{}` has no core module", path.display()))
}
