//! Zero-copy fanout: a producer writes a 1 MiB message once into a shared
//! region; every consumer reads the same physical pages; the host copies
//! nothing.

use anyhow::{Context, Result};
use karmem_runtime::{
    Access, Failure, Guest, GuestOptions, MemoryLayout, RegionPlacement, SharedRegion,
    link::fanout_call,
};
use wasmtime::Val;

use crate::common::{MESSAGE_MODULE, WINDOW_OFFSET, expected_checksum, load, runtime};

const MESSAGE_LEN: u32 = 1 << 20;
const MESSAGE_PAGES: u32 = MESSAGE_LEN / 0x10000;

#[test]
fn consumers_read_the_producers_pages_without_host_copies() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, MESSAGE_MODULE)?;
    let region = SharedRegion::new("message", MESSAGE_PAGES)?;
    let placement = |access| -> Result<GuestOptions> {
        Ok(GuestOptions {
            layout: MemoryLayout::new(vec![RegionPlacement::new(&region, WINDOW_OFFSET, access)])?,
            ..GuestOptions::default()
        })
    };
    let mut producer = runtime.instantiate(&module, &placement(Access::ReadWrite)?)?;
    let mut consumers = (0..4)
        .map(|_| runtime.instantiate(&module, &placement(Access::Read)?))
        .collect::<Result<Vec<Guest>>>()?;

    // One write, by the producer's own code.
    let seed = 0x5eed_0000_i64;
    producer.call(
        "produce",
        &[
            Val::I32(WINDOW_OFFSET as i32),
            Val::I32(MESSAGE_LEN as i32),
            Val::I64(seed),
        ],
    )?;

    let args = [Val::I32(WINDOW_OFFSET as i32), Val::I32(MESSAGE_LEN as i32)];
    let expected = expected_checksum(MESSAGE_LEN, seed);
    for (index, result) in fanout_call(&mut consumers, "checksum", &args)
        .into_iter()
        .enumerate()
    {
        let sum = result.with_context(|| format!("consumer {index}"))?[0].unwrap_i64();
        assert_eq!(sum, expected, "consumer {index} read a different message");
    }
    // Bytes the host copied per consumer: none (and none into the producer).
    for (index, consumer) in consumers.iter().enumerate() {
        assert_eq!(consumer.host_bytes_written(), 0, "consumer {index}");
        assert_eq!(consumer.host_bytes_read(), 0, "consumer {index}");
    }
    assert_eq!(producer.host_bytes_written(), 0);

    // Same physical pages: a later store by the producer is visible to every
    // consumer at once, with nothing delivered.
    producer.call("poke", &[Val::I32(WINDOW_OFFSET as i32), Val::I64(-1)])?;
    for result in fanout_call(&mut consumers, "peek", &[Val::I32(WINDOW_OFFSET as i32)]) {
        assert_eq!(result?[0].unwrap_i64(), -1);
    }
    Ok(())
}

#[test]
fn a_misbehaving_consumer_does_not_stop_the_others() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, MESSAGE_MODULE)?;
    let region = SharedRegion::new("message", 1)?;
    let mut consumers = (0..3)
        .map(|_| {
            runtime.instantiate(
                &module,
                &GuestOptions {
                    layout: MemoryLayout::new(vec![RegionPlacement::new(
                        &region,
                        WINDOW_OFFSET,
                        Access::Read,
                    )])?,
                    ..GuestOptions::default()
                },
            )
        })
        .collect::<Result<Vec<Guest>>>()?;
    // Consumer 1 tries to scribble on the message: it traps, alone.
    let err = consumers[1]
        .call("poke", &[Val::I32(WINDOW_OFFSET as i32), Val::I64(1)])
        .err()
        .context("consumers may not write the message")?;
    assert_eq!(Failure::of(&err), Failure::MemoryAccess);
    let results = fanout_call(&mut consumers, "peek", &[Val::I32(WINDOW_OFFSET as i32)]);
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[0].as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?[0].unwrap_i64(),
        0
    );
    assert!(results[1].is_err(), "the trapped consumer is retired");
    assert_eq!(
        results[2].as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?[0].unwrap_i64(),
        0
    );
    Ok(())
}

/// The host as producer: one write into the region (1 MiB once), every
/// consumer reads it in place.
#[test]
fn host_produced_message_is_written_once_for_all_consumers() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, MESSAGE_MODULE)?;
    let region = SharedRegion::new("message", MESSAGE_PAGES)?;
    let seed = 77i64;
    let message: Vec<u8> = (0..MESSAGE_LEN)
        .step_by(8)
        .flat_map(|i| (seed + i64::from(i)).to_le_bytes())
        .collect();
    region.write(0, &message)?;
    let mut consumers = (0..3)
        .map(|_| {
            runtime.instantiate(
                &module,
                &GuestOptions {
                    layout: MemoryLayout::new(vec![RegionPlacement::new(
                        &region,
                        WINDOW_OFFSET,
                        Access::Read,
                    )])?,
                    ..GuestOptions::default()
                },
            )
        })
        .collect::<Result<Vec<Guest>>>()?;
    let args = [Val::I32(WINDOW_OFFSET as i32), Val::I32(MESSAGE_LEN as i32)];
    for result in fanout_call(&mut consumers, "checksum", &args) {
        assert_eq!(
            result?[0].unwrap_i64(),
            expected_checksum(MESSAGE_LEN, seed)
        );
    }
    assert_eq!(
        region.host_bytes_written(),
        u64::from(MESSAGE_LEN),
        "one copy in total"
    );
    assert!(consumers.iter().all(|c| c.host_bytes_written() == 0));
    Ok(())
}
