//! Correctness of every benchmark path, one call each (no timing): each
//! path's analysis at N = 10 and 10,000 agrees with the host's reference and
//! with the others; the committed generated code and descriptor are current.
//! `BLESS=1` rewrites `generated.rs` and `descriptor.bin` (then rebuild the
//! guests with `benches/guests/build.sh`).

use std::path::Path;

use anyhow::{Context as _, Result};
use karmem_bench_e2e::{
    FANOUT_CONSUMERS, SIZES, check, component::ComponentPath, guest_bytes, guests_dir, json::JsonPath,
    lowered::LoweredPath, native::NativePath, readings, reference,
};
use karmem_runtime::{Runtime, RuntimeConfig};

fn bless() -> bool {
    std::env::var_os("BLESS").is_some()
}

fn compare_or_bless(path: &Path, want: &[u8]) -> Result<()> {
    if bless() {
        return std::fs::write(path, want).with_context(|| format!("failed to write `{}`", path.display()));
    }
    let got = std::fs::read(path).with_context(|| format!("failed to read `{}`", path.display()))?;
    anyhow::ensure!(got == want, "`{}` is stale: run with BLESS=1, then benches/guests/build.sh", path.display());
    Ok(())
}

#[test]
fn descriptor_is_current() -> Result<()> {
    let descriptor = karmem_bench_e2e::native::descriptor()?;
    // It decodes as a descriptor with the sentinel offset the guest patches.
    let parsed = karmem_bench_e2e::abi::parse_descriptor(&descriptor)?;
    assert_eq!(parsed.name, "temperature");
    assert_eq!(parsed.memories[0].2, karmem_bench_e2e::native::REGION_OFFSET_SENTINEL);
    compare_or_bless(&guests_dir().join("temperature-karmem/descriptor.bin"), &descriptor)
}

#[test]
fn generated_code_is_current() -> Result<()> {
    let schema = karmem_idl::load(karmem_bench_e2e::native::SCHEMA, "benches/guests/temperature.km")?;
    let layout = karmem_format::Layout::new(&schema).map_err(|e| anyhow::anyhow!("{e}"))?;
    let code = karmem_format::gen_rust::generate(&layout, "benches/guests/temperature.km");
    compare_or_bless(&guests_dir().join("temperature-karmem/src/generated.rs"), code.as_bytes())
}

#[test]
fn every_path_agrees() -> Result<()> {
    let runtime = Runtime::new(RuntimeConfig { rewrite_bulk_memory: true, ..RuntimeConfig::default() })?;
    let component = guest_bytes("temperature-component.wasm")?;
    let lowered = karmem_bench_e2e::lowered::lower(&component)?;
    let mut a = ComponentPath::new(&component)?;
    let mut b = LoweredPath::new(&runtime, &lowered, 1 << 20)?;
    let karmem = guest_bytes("temperature-karmem.wasm")?;
    let mut c = NativePath::new(&runtime, &karmem, 1)?;
    let mut d = JsonPath::new(&runtime, &guest_bytes("temperature-json.wasm")?)?;
    let mut e = NativePath::new(&runtime, &karmem, FANOUT_CONSUMERS)?;
    for n in SIZES {
        let data = readings(n);
        let want = reference(&data);
        a.set_readings(&data);
        b.set_readings(&data);
        c.share(&data)?;
        d.set_readings(&data);
        e.share(&data)?;
        let got_a = a.analyze()?;
        check("a", n, got_a, want)?;
        check("b", n, b.analyze()?, want)?;
        check("c", n, c.analyze(0)?, want)?;
        check("d", n, d.analyze()?, want)?;
        for k in 0..e.consumers() {
            check(&format!("e/{k}"), n, e.analyze(k)?, want)?;
        }
        // Built in place in the region: the same message, the same result.
        let copied = c.analyze(0)?;
        c.build_in_place(&data)?;
        assert_eq!(c.analyze(0)?, copied, "in-place and copied messages differ at n = {n}");
        // (a) and (b) run the same guest code: the same bits.
        assert_eq!(b.analyze()?, got_a, "lowered and component results differ at n = {n}");
    }
    // The fanout consumers got the batch only through the shared region.
    assert_eq!(e.host_bytes_written(), 0);
    assert_eq!(c.host_bytes_written(), 0);
    Ok(())
}
