//! Guest for path (d) of the end-to-end benchmark: the readings arrive as
//! JSON text (`{"readings":[{"timestamp":..,"value":..},..]}`) and are parsed
//! with serde_json inside the guest. A plain core module
//! (wasm32-unknown-unknown) with a small ABI of its own:
//! - `json_alloc(len) -> ptr`: a buffer the host writes the text into (kept
//!   and reused while `len` fits);
//! - `analyze_json(ptr, len) -> ptr`: parses, aggregates, returns a pointer to
//!   three little-endian `f32` (average, max, min); traps on invalid JSON.

use serde::Deserialize;

#[derive(Deserialize)]
struct Reading {
    #[allow(dead_code)]
    timestamp: i64,
    value: f32,
}

#[derive(Deserialize)]
struct Batch {
    readings: Vec<Reading>,
}

static mut INPUT: Vec<u8> = Vec::new();
static mut OUTPUT: [f32; 3] = [0.0; 3];

/// A buffer of at least `len` bytes for the host to write JSON into.
#[unsafe(no_mangle)]
pub extern "C" fn json_alloc(len: u32) -> *mut u8 {
    // SAFETY: wasm32-unknown-unknown is single-threaded and the host calls
    // one export at a time, so nothing else references `INPUT` now.
    let input = unsafe { &mut *core::ptr::addr_of_mut!(INPUT) };
    input.resize(len as usize, 0);
    input.as_mut_ptr()
}

/// Parses the JSON at `ptr..ptr+len` and returns a pointer to its analysis.
#[unsafe(no_mangle)]
pub extern "C" fn analyze_json(ptr: *const u8, len: u32) -> *const f32 {
    // SAFETY: the host passes a buffer it got from `json_alloc` and filled.
    let text = unsafe { core::slice::from_raw_parts(ptr, len as usize) };
    let Ok(batch) = serde_json::from_slice::<Batch>(text) else { core::arch::wasm32::unreachable() };
    let mut sum = 0.0f32;
    let mut max = f32::NEG_INFINITY;
    let mut min = f32::INFINITY;
    for reading in &batch.readings {
        sum += reading.value;
        max = max.max(reading.value);
        min = min.min(reading.value);
    }
    let average = if batch.readings.is_empty() { 0.0 } else { sum / batch.readings.len() as f32 };
    // SAFETY: single-threaded, as in `json_alloc`.
    let output = unsafe { &mut *core::ptr::addr_of_mut!(OUTPUT) };
    *output = [average, max, min];
    output.as_ptr()
}
