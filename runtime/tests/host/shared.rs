//! Shared windows: permissions, host-side guards, late mapping, growth, and
//! the "next layout" slot under concurrency.

use std::sync::Arc;

use anyhow::{Context, Result};
use karmem_runtime::{Access, Failure, GuestOptions, MemoryLayout, RegionPlacement, SharedRegion};
use wasmtime::Val;

use crate::common::{MESSAGE_MODULE, WINDOW_OFFSET, load, runtime};

fn options(region: &Arc<SharedRegion>, access: Access) -> Result<GuestOptions> {
    Ok(GuestOptions {
        layout: MemoryLayout::new(vec![RegionPlacement::new(region, WINDOW_OFFSET, access)])?,
        ..GuestOptions::default()
    })
}

fn peek(guest: &mut karmem_runtime::Guest, offset: u64) -> Result<i64> {
    guest
        .call("peek", &[Val::I32(offset as i32)])?
        .first()
        .and_then(Val::i64)
        .context("`peek` returns an i64")
}

#[test]
fn read_only_write_traps_and_the_host_runs_another_guest() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, MESSAGE_MODULE)?;
    let region = SharedRegion::new("events", 2)?;
    let mut producer = runtime.instantiate(&module, &options(&region, Access::ReadWrite)?)?;
    let mut reader = runtime.instantiate(&module, &options(&region, Access::Read)?)?;

    producer.call("poke", &[Val::I32(WINDOW_OFFSET as i32), Val::I64(7)])?;
    assert_eq!(peek(&mut reader, WINDOW_OFFSET)?, 7);

    let err = reader
        .call("poke", &[Val::I32(WINDOW_OFFSET as i32 + 8), Val::I64(9)])
        .err()
        .context("a store into a read-only window must trap")?;
    assert_eq!(Failure::of(&err), Failure::MemoryAccess, "{err:?}");
    assert!(reader.poisoned().is_some());
    assert!(
        reader.call("peek", &[Val::I32(0)]).is_err(),
        "a trapped guest is unusable"
    );
    // The write did not land, the producer still works.
    assert_eq!(peek(&mut producer, WINDOW_OFFSET + 8)?, 0);

    // The same host keeps going: a fresh guest runs fine.
    let mut fresh = runtime.instantiate(&module, &options(&region, Access::Read)?)?;
    assert_eq!(peek(&mut fresh, WINDOW_OFFSET)?, 7);
    // Private memory outside the window stays writable for the reader role.
    fresh.call("poke", &[Val::I32(0x100), Val::I64(5)])?;
    assert_eq!(peek(&mut fresh, 0x100)?, 5);
    Ok(())
}

#[test]
fn inaccessible_window_traps_on_read() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, MESSAGE_MODULE)?;
    let region = SharedRegion::new("hidden", 1)?;
    let mut guest = runtime.instantiate(&module, &options(&region, Access::None)?)?;
    let err = guest
        .call("peek", &[Val::I32(WINDOW_OFFSET as i32)])
        .err()
        .context("a load from an inaccessible window must trap")?;
    assert_eq!(Failure::of(&err), Failure::MemoryAccess);
    Ok(())
}

#[test]
fn host_access_is_guarded_instead_of_crashing() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, MESSAGE_MODULE)?;
    let read_only = SharedRegion::new("ro", 1)?;
    let mut reader = runtime.instantiate(&module, &options(&read_only, Access::Read)?)?;

    // Straddling the window's first byte is refused too.
    let err = reader
        .write_memory(WINDOW_OFFSET - 4, &[0; 8])
        .err()
        .context("a host write into a read-only window must be refused")?;
    let message = format!("{err:#}");
    assert!(
        message.contains("shared memory `ro`") && message.contains("`read`"),
        "{message}"
    );
    assert_eq!(reader.host_bytes_written(), 0);
    // Reads are fine, and so are writes elsewhere.
    let mut buf = [1u8; 8];
    reader.read_memory(WINDOW_OFFSET, &mut buf)?;
    assert_eq!(buf, [0; 8]);
    reader.write_memory(0, &[1, 2, 3])?;
    assert_eq!(reader.host_bytes_written(), 3);
    assert!(
        reader.write_memory(18 * 0x10000 - 1, &[0, 0]).is_err(),
        "out of bounds"
    );

    let hidden = SharedRegion::new("hidden", 1)?;
    let mut blind = runtime.instantiate(&module, &options(&hidden, Access::None)?)?;
    let err = blind
        .read_memory(WINDOW_OFFSET, &mut buf)
        .err()
        .context("a host read of an inaccessible window must be refused")?;
    assert!(format!("{err:#}").contains("host read"), "{err:#}");
    Ok(())
}

#[test]
fn modules_that_would_make_the_host_write_a_protected_window_are_refused() -> Result<()> {
    let runtime = runtime()?;
    let region = SharedRegion::new("m", 1)?;

    let fill = load(
        &runtime,
        r#"(module (memory (export "memory") 4)
             (func (export "wipe") (memory.fill (i32.const 0x10000) (i32.const 1) (i32.const 4096))))"#,
    )?;
    let err = runtime
        .instantiate(&fill, &options(&region, Access::Read)?)
        .err()
        .context("memory.fill with a read-only window must be refused")?;
    assert!(format!("{err:#}").contains("`memory.fill`"), "{err:#}");
    // Read-write windows are fine for the same module.
    let mut writer = runtime.instantiate(&fill, &options(&region, Access::ReadWrite)?)?;
    writer.call("wipe", &[])?;

    let data = load(
        &runtime,
        r#"(module (memory (export "memory") 4) (data (i32.const 0x10008) "x"))"#,
    )?;
    let err = runtime
        .instantiate(&data, &options(&region, Access::ReadWrite)?)
        .err()
        .context("a data segment on a window must be refused")?;
    assert!(format!("{err:#}").contains("data segment 0"), "{err:#}");

    let imported = load(&runtime, r#"(module (import "env" "memory" (memory 4)))"#)?;
    let err = runtime
        .instantiate(&imported, &options(&region, Access::ReadWrite)?)
        .err()
        .context("an imported memory cannot carry windows")?;
    assert!(format!("{err:#}").contains("imports it"), "{err:#}");
    Ok(())
}

#[test]
fn window_beyond_the_initial_memory_is_an_instantiation_error() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, MESSAGE_MODULE)?;
    let region = SharedRegion::new("far", 1)?;
    let layout = MemoryLayout::new(vec![RegionPlacement::new(
        &region,
        18 * 0x10000,
        Access::Read,
    )])?;
    let err = runtime
        .instantiate(
            &module,
            &GuestOptions {
                layout,
                ..GuestOptions::default()
            },
        )
        .err()
        .context("a window past the memory's minimum must be refused")?;
    assert!(
        format!("{err:#}").contains("outside the linear memory"),
        "{err:#}"
    );
    // The slot was cleared: the next plain instantiation is unaffected.
    let mut plain = runtime.instantiate(&module, &GuestOptions::default())?;
    assert!(plain.windows().is_empty());
    assert_eq!(peek(&mut plain, 0)?, 0);
    Ok(())
}

#[test]
fn windows_survive_growth_and_can_be_mapped_late() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, MESSAGE_MODULE)?;
    let region = SharedRegion::new("late", 1)?;
    let mut producer = runtime.instantiate(&module, &options(&region, Access::ReadWrite)?)?;
    producer.call("poke", &[Val::I32(WINDOW_OFFSET as i32), Val::I64(11)])?;

    // Instantiated without a layout; private data in the range first.
    let mut late = runtime.instantiate(&module, &GuestOptions::default())?;
    late.call("poke", &[Val::I32(0x30000), Val::I64(99)])?;
    late.map_shared(&RegionPlacement::new(&region, 0x30000, Access::Read))?;
    assert_eq!(
        peek(&mut late, 0x30000)?,
        11,
        "the region replaced the private page"
    );
    assert_eq!(late.windows().len(), 1);
    assert!(
        late.map_shared(&RegionPlacement::new(&region, 0x30000, Access::Read))
            .is_err(),
        "overlap"
    );

    // Growth leaves the windows alone and makes the new pages usable.
    let old_pages = producer.call("grow", &[Val::I32(2)])?[0].unwrap_i32();
    assert_eq!(old_pages, 18);
    producer.call("poke", &[Val::I32(19 * 0x10000), Val::I64(3)])?;
    producer.call("poke", &[Val::I32(WINDOW_OFFSET as i32), Val::I64(12)])?;
    assert_eq!(peek(&mut late, 0x30000)?, 12);
    assert!(
        late.call("poke", &[Val::I32(0x30000), Val::I64(1)])
            .is_err(),
        "the late window is read-only"
    );
    Ok(())
}

/// The "next layout" slot is per thread: guests instantiated concurrently,
/// with and without layouts, each get exactly their own windows.
#[test]
fn next_layout_slot_is_isolated_between_threads() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, MESSAGE_MODULE)?;
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..6i64)
            .map(|worker| {
                let runtime = &runtime;
                let module = &module;
                scope.spawn(move || -> Result<()> {
                    let region = SharedRegion::new(&format!("worker-{worker}"), 1)?;
                    let mut owner =
                        runtime.instantiate(module, &options(&region, Access::ReadWrite)?)?;
                    owner.call(
                        "poke",
                        &[Val::I32(WINDOW_OFFSET as i32), Val::I64(1000 + worker)],
                    )?;
                    for round in 0..15 {
                        if (round + worker) % 3 == 0 {
                            let mut plain =
                                runtime.instantiate(module, &GuestOptions::default())?;
                            anyhow::ensure!(
                                plain.windows().is_empty(),
                                "worker {worker}: plain guest got a window"
                            );
                            anyhow::ensure!(
                                peek(&mut plain, WINDOW_OFFSET)? == 0,
                                "worker {worker}: plain guest sees shared data"
                            );
                        } else {
                            let mut reader =
                                runtime.instantiate(module, &options(&region, Access::Read)?)?;
                            let seen = peek(&mut reader, WINDOW_OFFSET)?;
                            anyhow::ensure!(
                                seen == 1000 + worker,
                                "worker {worker} round {round}: saw {seen}"
                            );
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker
                .join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
        }
        Ok(())
    })
}

#[test]
fn data_segments_beside_windows_are_copied_in() -> Result<()> {
    let runtime = runtime()?;
    let module = load(
        &runtime,
        r#"(module (memory (export "memory") 4)
             (data (i32.const 0x100) "\2a\00\00\00\00\00\00\00")
             (data (i32.const 0x20000) "\07")
             (func (export "peek") (param i32) (result i64) (i64.load (local.get 0))))"#,
    )?;
    let region = SharedRegion::new("ro", 1)?;
    let mut guest = runtime.instantiate(&module, &options(&region, Access::Read)?)?;
    assert_eq!(peek(&mut guest, 0x100)?, 42);
    assert_eq!(peek(&mut guest, 0x20000)?, 7);
    assert_eq!(peek(&mut guest, WINDOW_OFFSET)?, 0);
    Ok(())
}

/// Pools will move guests between threads.
#[test]
fn guests_and_regions_are_send() {
    fn assert_send<T: Send>() {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send::<karmem_runtime::Guest>();
    assert_send_sync::<SharedRegion>();
    assert_send_sync::<karmem_runtime::Runtime>();
}

/// A host import called from the start function, before the guest object
/// exists, is held to the planned windows too.
#[test]
fn host_functions_cannot_write_protected_windows_even_during_start() -> Result<()> {
    let runtime = runtime()?;
    let mut linker = runtime.linker();
    linker
        .func_wrap(
            "host",
            "scribble",
            |mut caller: wasmtime::Caller<'_, karmem_runtime::GuestState>,
             offset: i32|
             -> wasmtime::Result<()> {
                karmem_runtime::write_caller_memory(&mut caller, offset as u64, &[1, 2, 3])
                    .map_err(wasmtime::Error::from_anyhow)
            },
        )
        .map_err(anyhow::Error::from)?;
    let module = load(
        &runtime,
        r#"(module
             (import "host" "scribble" (func $scribble (param i32)))
             (memory (export "memory") 4)
             (func $start (call $scribble (i32.const 0x100)) (call $scribble (i32.const 0x10000)))
             (start $start))"#,
    )?;
    let region = SharedRegion::new("ro", 1)?;
    let err = runtime
        .instantiate_with(&linker, &module, &options(&region, Access::Read)?)
        .err()
        .context("the host write into the window must be refused")?;
    assert!(
        format!("{err:?}").contains("refusing a host write of 3 bytes at 0x10000"),
        "{err:?}"
    );
    // Without windows the same start function succeeds.
    let guest = runtime.instantiate_with(&linker, &module, &GuestOptions::default())?;
    assert_eq!(guest.host_bytes_written(), 6);
    Ok(())
}

/// Memories the windowed creator does not support are refused with an
/// error, not a crash.
#[test]
fn unsupported_memories_are_refused_cleanly() -> Result<()> {
    let runtime = runtime()?;
    let memory64 = load(&runtime, "(module (memory i64 1))")?;
    let err = runtime
        .instantiate(&memory64, &GuestOptions::default())
        .err()
        .context("64-bit memories must be refused")?;
    assert!(format!("{err:#}").contains("64-bit memories"), "{err:#}");
    let threads = runtime.load(&wat::parse_str("(module (memory 1 1 shared))")?);
    if let Ok(module) = threads {
        assert!(
            runtime
                .instantiate(&module, &GuestOptions::default())
                .is_err()
        );
    }
    Ok(())
}

/// A message built in place in a region (the host's own mapping, no copy and
/// no `write`) is what every guest mapping the region reads; the builder is
/// one per region, 64-byte aligned, bounded by its range and by the region.
#[test]
#[allow(unsafe_code)]
fn a_message_built_in_place_is_seen_by_the_guests() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, MESSAGE_MODULE)?;
    let region = SharedRegion::new("in-place", 2)?;
    let mut readers = [
        runtime.instantiate(&module, &options(&region, Access::Read)?)?,
        runtime.instantiate(&module, &options(&region, Access::Read)?)?,
    ];

    for round in 0..3u64 {
        // SAFETY: no guest runs while the builder lives (it is dropped before
        // the calls below), and nothing else touches the region.
        let mut builder = unsafe { region.builder(0x1000, 0x2000)? };
        let block = builder.alloc_block(64 * 8).map_err(anyhow::Error::msg)?;
        for i in 0..64u32 {
            builder.put(block + 8 * i, round * 1000 + u64::from(i));
        }
        assert_eq!(builder.len(), block + 64 * 8);
        // The range is exhausted at 0x2000 bytes, the region's writer is taken.
        assert!(builder.alloc_block(0x2000).is_err());
        // SAFETY: fails before touching anything (a builder exists).
        assert!(unsafe { region.builder(0x4000, 64) }.is_err());
        drop(builder);
        for reader in &mut readers {
            let at = WINDOW_OFFSET + 0x1000 + u64::from(block);
            assert_eq!(peek(reader, at)?, (round * 1000) as i64);
            assert_eq!(peek(reader, at + 63 * 8)?, (round * 1000 + 63) as i64);
        }
    }
    assert_eq!(
        region.host_bytes_written(),
        0,
        "building in place copies nothing"
    );
    // SAFETY (all three): they fail on their arguments before mapping or writing.
    let misaligned = unsafe { region.builder(8, 64) }
        .err()
        .context("a misaligned message must be refused")?;
    assert!(
        format!("{misaligned:#}").contains("multiple of 64"),
        "{misaligned:#}"
    );
    assert!(
        unsafe { region.builder(0x1_0000, 0x1_0001) }.is_err(),
        "past the region's end"
    );
    assert!(
        unsafe { region.builder(0, 4) }.is_err(),
        "no room for the header"
    );
    Ok(())
}
