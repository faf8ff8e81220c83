//! Guest for paths (c) and (e) of the end-to-end benchmark: a Karmem-native
//! module (wasm32-unknown-unknown, no component model) that implements the
//! Karmem ABI (docs/ABI.md) by hand for one function,
//! `temperature.analyze`, with the views and builders `karmem-bridge gen
//! rust` generated from `../temperature.km` (the paper's Figure 32 structs).
//!
//! The argument message is read in place: `readings` is an SoA array, so its
//! `value` column is a `&[f32]` straight into the message, aggregated with
//! wasm `simd128` (this crate is built with `+simd128`, see `build.sh`).
//!
//! Owns: the ABI exports and the aggregation. The descriptor message is
//! encoded on the host by `karmem-bench-e2e` (`descriptor.bin`, checked by its
//! tests) because the generated builders cannot write string columns of SoA
//! arrays; `KarmemInit` copies it and patches the region offset in (the
//! host encodes `REGION_OFFSET_SENTINEL` there).
//!
//! The raw pointers the host passes make `unsafe` unavoidable here; each
//! block says why it holds.

#[allow(dead_code, clippy::all)]
mod generated;

use core::arch::wasm32;
use std::alloc::Layout;

use generated::{TemperatureAnalyzeParamsView, TemperatureAnalyzeResultsBuilder};
use karmem_format::Builder;

/// The descriptor of exported interface 0, `temperature`, with region offset 0.
static DESCRIPTOR: &[u8] = include_bytes!("../descriptor.bin");
/// Pages of the `batch` region (as `../temperature.km` declares).
const BATCH_PAGES: u32 = 4;
const PAGE: u32 = 65536;

struct State {
    /// The descriptor, 64-aligned, with the region offset patched in.
    descriptor: (u32, u32),
    /// The result message of the last call (reused; reset is O(1)).
    output: Builder,
}

static mut STATE: Option<State> = None;

fn state() -> &'static mut State {
    // SAFETY: wasm32-unknown-unknown is single-threaded and the host calls one
    // export at a time, so no other reference to `STATE` is live.
    match unsafe { &mut *core::ptr::addr_of_mut!(STATE) } {
        Some(state) => state,
        None => wasm32::unreachable(),
    }
}

fn pack(ptr: u32, len: u32) -> i64 {
    ((u64::from(len) << 32) | u64::from(ptr)) as i64
}

#[unsafe(export_name = "KarmemAlloc")]
pub extern "C" fn karmem_alloc(size: u32, align: u32) -> u32 {
    if size > 1 << 31 || align > 64 || !align.is_power_of_two() {
        wasm32::unreachable();
    }
    let Ok(layout) = Layout::from_size_align(size.max(1) as usize, align as usize) else { wasm32::unreachable() };
    // SAFETY: `layout` has a non-zero size.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        wasm32::unreachable();
    }
    ptr as u32
}

#[unsafe(export_name = "KarmemFree")]
pub extern "C" fn karmem_free(ptr: u32, size: u32, align: u32) {
    if ptr == 0 {
        return;
    }
    let Ok(layout) = Layout::from_size_align(size.max(1) as usize, align as usize) else { wasm32::unreachable() };
    // SAFETY: the ABI says `ptr` came from `KarmemAlloc(size, align)`, which
    // allocated it with this same layout.
    unsafe { std::alloc::dealloc(ptr as *mut u8, layout) }
}

#[unsafe(export_name = "KarmemInit")]
pub extern "C" fn karmem_init() -> i64 {
    // SAFETY: single-threaded, see `state`.
    let slot = unsafe { &mut *core::ptr::addr_of_mut!(STATE) };
    if slot.is_some() {
        wasm32::unreachable();
    }
    // The region: fresh pages past everything the allocator has now; it
    // grows memory past them later and never hands them out.
    let first_page = wasm32::memory_grow(0, BATCH_PAGES as usize);
    if first_page == usize::MAX {
        wasm32::unreachable();
    }
    let region = first_page as u32 * PAGE;
    let len = DESCRIPTOR.len() as u32;
    let ptr = karmem_alloc(len, 64);
    // SAFETY: `ptr` is a fresh allocation of `len` bytes.
    let copy = unsafe { core::slice::from_raw_parts_mut(ptr as *mut u8, len as usize) };
    copy.copy_from_slice(DESCRIPTOR);
    patch_region_offset(copy, region);
    *slot = Some(State { descriptor: (ptr, len), output: Builder::with_capacity(256) });
    // (imports << 32) | exports
    1
}

/// The `offset` of the descriptor's one memory as the host encoded it; the
/// real offset is known only now (the adapters patch theirs the same way).
pub const REGION_OFFSET_SENTINEL: u32 = 0x4b4d_0000;

/// Writes `region` where the descriptor holds `REGION_OFFSET_SENTINEL`.
fn patch_region_offset(descriptor: &mut [u8], region: u32) {
    let sentinel = REGION_OFFSET_SENTINEL.to_le_bytes();
    let Some(at) = descriptor.windows(4).position(|w| w == sentinel) else { wasm32::unreachable() };
    let Some(bytes) = descriptor.get_mut(at..at + 4) else { wasm32::unreachable() };
    bytes.copy_from_slice(&region.to_le_bytes());
}

#[unsafe(export_name = "KarmemImport")]
pub extern "C" fn karmem_import(_index: u32) -> i64 {
    wasm32::unreachable()
}

#[unsafe(export_name = "KarmemExport")]
pub extern "C" fn karmem_export(index: u32) -> i64 {
    let (ptr, len) = state().descriptor;
    if index != 0 {
        wasm32::unreachable();
    }
    pack(ptr, len)
}

#[unsafe(export_name = "KarmemCall")]
pub extern "C" fn karmem_call(fn_id: u32, ptr: u32, len: u32) -> i64 {
    match fn_id {
        0 => analyze(ptr, len),
        _ => wasm32::unreachable(),
    }
}

/// `temperature.analyze(readings @ batch) -> (ret: analysis_result)`.
#[unsafe(export_name = "temperature.analyze")]
pub extern "C" fn analyze(ptr: u32, len: u32) -> i64 {
    let state = state();
    // SAFETY: the host passes a message it placed at `ptr..ptr+len` in this
    // memory (the batch region or a `KarmemAlloc` buffer); wasm memory is
    // always mapped, and the views bounds-check every access within it.
    let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, len as usize) };
    let (sum, max, min, n) = match read(bytes) {
        Ok(aggregate) => aggregate,
        Err(_) => wasm32::unreachable(),
    };
    let average = if n == 0 { 0.0 } else { sum / n as f32 };
    let out = &mut state.output;
    out.reset();
    let Ok(results) = TemperatureAnalyzeResultsBuilder::new_root(out) else { wasm32::unreachable() };
    let Ok(ret) = results.new_ret(out) else { wasm32::unreachable() };
    ret.set_average_temperature(out, average);
    ret.set_max_temperature(out, max);
    ret.set_min_temperature(out, min);
    let bytes = out.as_bytes();
    pack(bytes.as_ptr() as u32, bytes.len() as u32)
}

/// (sum, max, min, count) of the `value` column, read in place.
fn read(bytes: &[u8]) -> Result<(f32, f32, f32, u32), karmem_format::Error> {
    let params = TemperatureAnalyzeParamsView::root(bytes)?;
    let readings = params.readings()?;
    let n = readings.len();
    let aggregate = match readings.value()? {
        Some(column) => match column.as_slice() {
            Some(values) => aggregate(values),
            None => column.iter().fold((0.0, f32::NEG_INFINITY, f32::INFINITY), |(s, hi, lo), v| {
                (s + v, hi.max(v), lo.min(v))
            }),
        },
        // A writer without the column: every value reads as 0.
        None if n > 0 => (0.0, 0.0, 0.0),
        None => (0.0, f32::NEG_INFINITY, f32::INFINITY),
    };
    Ok((aggregate.0, aggregate.1, aggregate.2, n))
}

/// (sum, max, min) with four f32x4 lanes, then the tail.
fn aggregate(values: &[f32]) -> (f32, f32, f32) {
    use wasm32::{f32x4, f32x4_add, f32x4_extract_lane, f32x4_max, f32x4_min, f32x4_splat};
    let mut sum = f32x4_splat(0.0);
    let mut max = f32x4_splat(f32::NEG_INFINITY);
    let mut min = f32x4_splat(f32::INFINITY);
    let chunks = values.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let &[a, b, c, d] = chunk else { continue };
        let v = f32x4(a, b, c, d);
        sum = f32x4_add(sum, v);
        max = f32x4_max(max, v);
        min = f32x4_min(min, v);
    }
    let lanes = |v| {
        [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)]
    };
    let (mut s, mut hi, mut lo) = (0.0f32, f32::NEG_INFINITY, f32::INFINITY);
    for ((a, b), c) in lanes(sum).into_iter().zip(lanes(max)).zip(lanes(min)) {
        s += a;
        hi = hi.max(b);
        lo = lo.min(c);
    }
    for &v in tail {
        s += v;
        hi = hi.max(v);
        lo = lo.min(v);
    }
    (s, hi, lo)
}
