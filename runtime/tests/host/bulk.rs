//! The bulk-memory rewrite: same results as the native instructions, and a
//! clean trap (not a dead host) when aimed at a read-only window.

use anyhow::{Context, Result};
use karmem_runtime::{
    Access, Failure, GuestOptions, MemoryLayout, RegionPlacement, Runtime, RuntimeConfig,
    SharedRegion,
};
use wasmtime::Val;

use crate::common::WINDOW_OFFSET;

const BULK: &str = r#"(module
  (memory (export "memory") 4)
  (func (export "copy") (param i32 i32 i32) (memory.copy (local.get 0) (local.get 1) (local.get 2)))
  (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2)))
  (func (export "seed") (param $n i32)
    (local $i i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (local.get $i) (i32.add (i32.mul (local.get $i) (i32.const 7)) (i32.const 3)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))))"#;

fn rewriting_runtime() -> Result<Runtime> {
    Runtime::new(RuntimeConfig {
        rewrite_bulk_memory: true,
        ..RuntimeConfig::default()
    })
}

/// Runs `ops` on a fresh guest and returns the first 512 bytes, or the
/// failure kind of the first failing op.
fn run(
    runtime: &Runtime,
    bytes: &[u8],
    ops: &[(&str, [i32; 3])],
) -> Result<std::result::Result<Vec<u8>, Failure>> {
    let module = runtime.load(bytes)?;
    let mut guest = runtime.instantiate(&module, &GuestOptions::default())?;
    guest.call("seed", &[Val::I32(512)])?;
    for (name, [a, b, c]) in ops {
        if let Err(err) = guest.call(name, &[Val::I32(*a), Val::I32(*b), Val::I32(*c)]) {
            return Ok(Err(Failure::of(&err)));
        }
    }
    let mut memory = vec![0u8; 512];
    guest.read_memory(0, &mut memory)?;
    Ok(Ok(memory))
}

#[test]
fn rewritten_copy_and_fill_match_the_native_instructions() -> Result<()> {
    let bytes = wat::parse_str(BULK)?;
    let native = Runtime::new(RuntimeConfig::default())?;
    let rewriting = rewriting_runtime()?;
    assert!(!native.load(&bytes)?.facts().bulk_sites.is_empty());
    assert!(
        rewriting.load(&bytes)?.facts().bulk_sites.is_empty(),
        "the rewrite must apply"
    );
    let size = 4 * 0x10000;
    let mut cases: Vec<Vec<(&str, [i32; 3])>> = Vec::new();
    for len in [0, 1, 7, 8, 9, 15, 16, 17, 33, 200] {
        for (dst, src) in [
            (0, 100),
            (100, 0),
            (10, 13),
            (13, 10),
            (40, 40),
            (3, 250),
            (250, 3),
        ] {
            cases.push(vec![("copy", [dst, src, len])]);
        }
        cases.push(vec![("fill", [5, 0x1ab, len]), ("copy", [1, 0, len])]);
    }
    // Out of bounds, including lengths that overflow 32 bits.
    cases.push(vec![("copy", [size - 4, 0, 8])]);
    cases.push(vec![("copy", [0, size - 4, 8])]);
    cases.push(vec![("copy", [size, 0, 0])]);
    cases.push(vec![("copy", [size + 1, 0, 0])]);
    cases.push(vec![("copy", [16, 0, -1])]);
    cases.push(vec![("fill", [size - 2, 1, 3])]);
    cases.push(vec![("fill", [1, 1, -2])]);
    for ops in &cases {
        let expected = run(&native, &bytes, ops)?;
        let actual = run(&rewriting, &bytes, ops)?;
        assert_eq!(actual, expected, "ops {ops:?}");
    }
    Ok(())
}

#[test]
fn rewritten_fill_into_a_read_only_window_traps_and_the_host_lives() -> Result<()> {
    let runtime = rewriting_runtime()?;
    let module = runtime.load(&wat::parse_str(BULK)?)?;
    let region = SharedRegion::new("ro", 1)?;
    let layout =
        |access| MemoryLayout::new(vec![RegionPlacement::new(&region, WINDOW_OFFSET, access)]);
    let mut writer = runtime.instantiate(
        &module,
        &GuestOptions {
            layout: layout(Access::ReadWrite)?,
            ..GuestOptions::default()
        },
    )?;
    let mut reader = runtime.instantiate(
        &module,
        &GuestOptions {
            layout: layout(Access::Read)?,
            ..GuestOptions::default()
        },
    )?;

    let window = WINDOW_OFFSET as i32;
    writer.call("fill", &[Val::I32(window), Val::I32(0x42), Val::I32(4096)])?;
    // The reader may copy out of the window...
    reader.call("copy", &[Val::I32(0), Val::I32(window), Val::I32(4096)])?;
    let mut copied = [0u8; 16];
    reader.read_memory(4080, &mut copied)?;
    assert_eq!(copied, [0x42; 16]);
    // ...but a fill or copy into it is a trap, not a crash.
    let err = reader
        .call("fill", &[Val::I32(window), Val::I32(0), Val::I32(4096)])
        .err()
        .context("a fill into a read-only window must trap")?;
    assert_eq!(Failure::of(&err), Failure::MemoryAccess, "{err:?}");
    let mut other = runtime.instantiate(
        &module,
        &GuestOptions {
            layout: layout(Access::Read)?,
            ..GuestOptions::default()
        },
    )?;
    let err = other
        .call("copy", &[Val::I32(window + 8), Val::I32(0), Val::I32(1024)])
        .err()
        .context("a copy into a read-only window must trap")?;
    assert_eq!(Failure::of(&err), Failure::MemoryAccess, "{err:?}");

    // The window kept the writer's bytes and the host keeps serving guests.
    let mut fresh = runtime.instantiate(
        &module,
        &GuestOptions {
            layout: layout(Access::Read)?,
            ..GuestOptions::default()
        },
    )?;
    let mut seen = [0u8; 4];
    fresh.read_memory(WINDOW_OFFSET, &mut seen)?;
    assert_eq!(seen, [0x42; 4]);
    Ok(())
}

/// A copy whose source lies in an inaccessible window traps (the probes
/// load from it in compiled code) instead of faulting the host's `memmove`;
/// so does one that only starts before the window, or spans 64 KiB pages.
#[test]
fn rewritten_copy_out_of_an_inaccessible_window_traps_and_the_host_lives() -> Result<()> {
    let runtime = rewriting_runtime()?;
    let module = runtime.load(&wat::parse_str(BULK)?)?;
    let region = SharedRegion::new("hidden", 1)?;
    let options = || -> Result<GuestOptions> {
        Ok(GuestOptions {
            layout: MemoryLayout::new(vec![RegionPlacement::new(
                &region,
                WINDOW_OFFSET,
                Access::None,
            )])?,
            ..GuestOptions::default()
        })
    };
    let window = WINDOW_OFFSET as i32;
    for (src, len) in [
        (window, 16),
        (window - 8, 16),
        (window - 0x8000 + 4, 0x18000),
        (window + 100, 1),
    ] {
        let mut guest = runtime.instantiate(&module, &options()?)?;
        let err = guest
            .call("copy", &[Val::I32(0), Val::I32(src), Val::I32(len)])
            .err()
            .with_context(|| {
                format!(
                    "a copy from {src:#x} ({len} bytes) out of an inaccessible window must trap"
                )
            })?;
        assert_eq!(Failure::of(&err), Failure::MemoryAccess, "{err:?}");
        // Nothing was written before the trap.
        let mut head = [0u8; 16];
        guest.read_memory(0, &mut head)?;
        assert_eq!(head, [0u8; 16]);
    }
    // Private memory on both sides of the window still copies.
    let mut guest = runtime.instantiate(&module, &options()?)?;
    guest.call(
        "fill",
        &[Val::I32(0x20000), Val::I32(0x5a), Val::I32(0x20000)],
    )?;
    guest.call("copy", &[Val::I32(0), Val::I32(0x2fffc), Val::I32(0x10000)])?;
    let mut head = [0u8; 4];
    guest.read_memory(0, &mut head)?;
    assert_eq!(head, [0x5a; 4]);
    Ok(())
}

#[test]
fn rewritten_modules_are_cached_under_their_own_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bytes = wat::parse_str(BULK)?;
    let config = |rewrite_bulk_memory| RuntimeConfig {
        cache_dir: Some(dir.path().to_owned()),
        rewrite_bulk_memory,
        ..RuntimeConfig::default()
    };
    let plain = Runtime::new(config(false))?;
    let rewriting = Runtime::new(config(true))?;
    assert_eq!(
        plain.load(&bytes)?.cache_outcome(),
        &karmem_runtime::CacheOutcome::Miss
    );
    let module = rewriting.load(&bytes)?;
    assert_eq!(module.cache_outcome(), &karmem_runtime::CacheOutcome::Miss);
    assert!(module.facts().bulk_sites.is_empty());
    let again = rewriting.load(&bytes)?;
    assert_eq!(again.cache_outcome(), &karmem_runtime::CacheOutcome::Hit);
    // A hit of the rewritten entry still admits read-only windows.
    let region = SharedRegion::new("ro", 1)?;
    rewriting.instantiate(
        &again,
        &GuestOptions {
            layout: MemoryLayout::new(vec![RegionPlacement::new(
                &region,
                WINDOW_OFFSET,
                Access::Read,
            )])?,
            ..GuestOptions::default()
        },
    )?;
    Ok(())
}

/// A real Rust guest (the main module of `fixtures/components/command.p2.wasm`)
/// uses `memory.copy`/`memory.fill`: refused next to a read-only window as is,
/// accepted after the rewrite.
#[test]
fn a_real_rust_guest_accepts_read_only_windows_after_the_rewrite() -> Result<()> {
    let core = crate::common::fixture_core_module("command.p2.wasm")?;
    let facts = karmem_runtime::module::ModuleFacts::scan(&core)?;
    assert!(
        facts
            .bulk_sites
            .iter()
            .any(|s| s.instruction != "memory.init"),
        "the fixture was expected to use bulk memory"
    );
    let rewritten =
        karmem_runtime::bulk::rewrite(&core)?.context("the fixture must be rewritten")?;
    wasmparser::Validator::new().validate_all(&rewritten)?;

    // Page 1 lies in the guest's stack area (rustc puts data after the 1 MiB
    // stack); nothing runs here, and the data-segment check would refuse an
    // overlap.
    let offset = 0x10000;
    let region = SharedRegion::new("ro", 1)?;
    let options = GuestOptions {
        layout: MemoryLayout::new(vec![RegionPlacement::new(&region, offset, Access::Read)])?,
        ..GuestOptions::default()
    };

    for (rewrite_bulk_memory, accepted) in [(false, false), (true, true)] {
        let runtime = Runtime::new(RuntimeConfig {
            rewrite_bulk_memory,
            ..RuntimeConfig::default()
        })?;
        let module = runtime.load(&core)?;
        let mut linker = runtime.linker();
        linker
            .define_unknown_imports_as_traps(module.module())
            .map_err(anyhow::Error::from)?;
        let result = runtime.instantiate_with(&linker, &module, &options);
        match (result, accepted) {
            (Ok(mut guest), true) => {
                assert_eq!(guest.windows().len(), 1);
                assert!(guest.write_memory(offset, &[1]).is_err());
                region.write(0, &[9])?;
                let mut seen = [0u8];
                guest.read_memory(offset, &mut seen)?;
                assert_eq!(seen, [9]);
            }
            (Err(err), false) => {
                assert!(
                    format!("{err:#}").contains("RuntimeConfig::rewrite_bulk_memory"),
                    "{err:#}"
                );
            }
            (Ok(_), false) => anyhow::bail!("the unrewritten guest must be refused"),
            (Err(err), true) => return Err(err.context("the rewritten guest must be accepted")),
        }
    }
    Ok(())
}

/// Calls `greet` (canonical ABI, by hand) on the main module of the `basics`
/// fixture: a 150 KB name goes through Rust's `memcpy`, i.e. `memory.copy`.
/// Returns the result and what the guest logged through its host import.
fn greet_with_real_guest(rewrite_bulk_memory: bool, name: &str) -> Result<(String, Vec<String>)> {
    let runtime = Runtime::new(RuntimeConfig {
        rewrite_bulk_memory,
        ..RuntimeConfig::default()
    })?;
    let module = runtime.load(&crate::common::fixture_core_module("basics.p2.wasm")?)?;
    anyhow::ensure!(
        module.facts().bulk_sites.is_empty() == rewrite_bulk_memory,
        "the rewrite applies exactly when enabled"
    );
    let logged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut linker = runtime.linker();
    let sink = std::sync::Arc::clone(&logged);
    linker
        .func_wrap(
            "karmem:fixtures/host",
            "log",
            move |mut caller: wasmtime::Caller<'_, karmem_runtime::GuestState>,
                  ptr: i32,
                  len: i32|
                  -> wasmtime::Result<()> {
                let mut text = vec![0u8; len as u32 as usize];
                karmem_runtime::read_caller_memory(&mut caller, ptr as u32 as u64, &mut text)
                    .map_err(wasmtime::Error::from_anyhow)?;
                if let Ok(mut sink) = sink.lock() {
                    sink.push(String::from_utf8_lossy(&text).into_owned());
                }
                Ok(())
            },
        )
        .map_err(anyhow::Error::from)?;
    linker
        .define_unknown_imports_as_traps(module.module())
        .map_err(anyhow::Error::from)?;
    let mut guest = runtime.instantiate_with(&linker, &module, &GuestOptions::default())?;

    let len = name.len() as i32;
    let ptr = guest
        .call(
            "cabi_realloc",
            &[Val::I32(0), Val::I32(0), Val::I32(1), Val::I32(len)],
        )?
        .first()
        .and_then(Val::i32)
        .context("`cabi_realloc` returns an i32")?;
    guest.write_memory(ptr as u32 as u64, name.as_bytes())?;
    let ret = guest
        .call(
            "karmem:fixtures/basics#greet",
            &[Val::I32(ptr), Val::I32(len)],
        )?
        .first()
        .and_then(Val::i32)
        .context("`greet` returns an i32")?;
    let mut pair = [0u8; 8];
    guest.read_memory(ret as u32 as u64, &mut pair)?;
    let [a, b, c, d, e, f, g, h] = pair;
    let result_ptr = u32::from_le_bytes([a, b, c, d]);
    let result_len = u32::from_le_bytes([e, f, g, h]);
    let mut result = vec![0u8; result_len as usize];
    guest.read_memory(u64::from(result_ptr), &mut result)?;
    let logged = logged.lock().map(|l| l.clone()).unwrap_or_default();
    Ok((String::from_utf8(result)?, logged))
}

#[test]
fn a_real_rust_guest_gives_the_same_results_after_the_rewrite() -> Result<()> {
    let name = "name ".repeat(30_000);
    let expected = format!("hello, {name}");
    let native = greet_with_real_guest(false, &name)?;
    let rewritten = greet_with_real_guest(true, &name)?;
    assert_eq!(native.0, expected);
    assert_eq!(native.1, vec![expected.clone()]);
    assert_eq!(rewritten, native);
    Ok(())
}

/// `memory.init` from a passive segment: the rewrite probes the destination
/// first, so an init aimed at a read-only window traps (the host lives) and
/// one elsewhere writes what the native instruction writes, across pages.
const INIT: &str = r#"(module
  (memory (export "memory") 4)
  (data $d "0123456789abcdef")
  (func (export "init") (param i32 i32 i32) (memory.init $d (local.get 0) (local.get 1) (local.get 2)))
  (func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0))))"#;

#[test]
fn rewritten_memory_init_matches_native_and_traps_on_a_read_only_window() -> Result<()> {
    let bytes = wat::parse_str(INIT)?;
    let rewriting = rewriting_runtime()?;
    let module = rewriting.load(&bytes)?;
    assert!(
        module.facts().bulk_sites.is_empty(),
        "the rewrite must apply to memory.init"
    );

    // Same bytes as the native instruction, including a range across a page
    // boundary, a zero-length init and an out-of-bounds one (a trap).
    let native = Runtime::new(RuntimeConfig::default())?;
    let calls: [[i32; 3]; 4] = [
        [10, 0, 16],
        [0xFFF8, 2, 14],
        [0x3FFFF, 0, 0],
        [0x3FFFA, 0, 16],
    ];
    let mut outcomes = Vec::new();
    for runtime in [&native, &rewriting] {
        let module = runtime.load(&bytes)?;
        let mut results = Vec::new();
        for [dst, src, len] in calls {
            let mut guest = runtime.instantiate(&module, &GuestOptions::default())?;
            let outcome = guest.call("init", &[Val::I32(dst), Val::I32(src), Val::I32(len)]);
            let mut memory = vec![0u8; 32];
            let start = u64::try_from(dst.max(16) - 16)?.min(0x40000 - 32);
            guest.read_memory(start, &mut memory)?;
            results.push((outcome.map(|_| ()).map_err(|e| Failure::of(&e)), memory));
        }
        outcomes.push(results);
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert!(
        matches!(outcomes[1][3].0, Err(Failure::MemoryAccess)),
        "{:?}",
        outcomes[1][3].0
    );

    // Aimed at a read-only window (even ending inside it): a trap of that
    // guest, not a fault in the host.
    let region = SharedRegion::new("ro", 1)?;
    let options = GuestOptions {
        layout: MemoryLayout::new(vec![RegionPlacement::new(
            &region,
            WINDOW_OFFSET,
            Access::Read,
        )])?,
        ..GuestOptions::default()
    };
    for dst in [WINDOW_OFFSET as i32 + 100, WINDOW_OFFSET as i32 - 4] {
        let mut guest = rewriting.instantiate(&module, &options)?;
        let error = guest
            .call("init", &[Val::I32(dst), Val::I32(0), Val::I32(16)])
            .err()
            .context("an init into a read-only window must trap")?;
        assert_eq!(Failure::of(&error), Failure::MemoryAccess);
    }
    let mut guest = rewriting.instantiate(&module, &options)?;
    guest.call("init", &[Val::I32(0x100), Val::I32(0), Val::I32(16)])?;
    assert_eq!(
        guest.call("peek", &[Val::I32(0x10f)])?[0].unwrap_i32(),
        i32::from(b'f')
    );
    Ok(())
}
