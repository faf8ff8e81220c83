//! Call-level pool and singleton behaviour (no handshake involved).

use std::num::NonZeroUsize;
use std::sync::Arc;

use anyhow::{Context, Result};
use karmem_runtime::GuestOptions;
use karmem_runtime::link::{GuestFactory, GuestPool, SharedGuest};

use crate::common::{load, runtime};

const COUNTER: &str = r#"(module
  (global $count (mut i32) (i32.const 0))
  (func (export "bump") (result i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (global.get $count))
  (func (export "boom") unreachable))"#;

#[test]
fn a_pool_spreads_calls_over_threads_and_replaces_failed_members() -> Result<()> {
    let runtime = Arc::new(runtime()?);
    let module = load(&runtime, COUNTER)?;
    let factory: GuestFactory = {
        let runtime = Arc::clone(&runtime);
        Arc::new(move || runtime.instantiate(&module, &GuestOptions::default()))
    };
    let pool = GuestPool::new(NonZeroUsize::new(3).context("non-zero")?, factory)?;

    let counts = std::thread::scope(|scope| -> Result<Vec<i32>> {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| -> Result<Vec<i32>> {
                    (0..50)
                        .map(|_| Ok(pool.call("bump", &[])?[0].unwrap_i32()))
                        .collect()
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in workers {
            all.extend(
                worker
                    .join()
                    .map_err(|_| anyhow::anyhow!("a worker panicked"))??,
            );
        }
        Ok(all)
    })?;
    // Every call ran exactly once on some member: each member's counter
    // values are 1..=k, so the 1s count the members used and the values sum
    // up per member.
    assert_eq!(counts.len(), 200);
    let members_used = counts.iter().filter(|&&c| c == 1).count();
    assert!((1..=3).contains(&members_used), "{members_used} members");
    let mut sorted = counts.clone();
    sorted.sort_unstable();
    let max = sorted.last().copied().unwrap_or(0);
    let occurrences = |value: i32| sorted.iter().filter(|&&c| c == value).count();
    for value in 1..=max {
        // Each member returns each count once, and reaches `value` only
        // after `value - 1`.
        assert!(
            occurrences(value) <= 3,
            "more than three members returned {value}"
        );
        if value > 1 {
            assert!(
                occurrences(value) <= occurrences(value - 1),
                "counts are not contiguous at {value}"
            );
        }
    }

    // A failing call retires its member; the pool stays at full strength.
    assert!(pool.call("boom", &[]).is_err());
    for _ in 0..6 {
        pool.call("bump", &[])?;
    }
    assert_eq!(pool.replaced(), 1);
    assert_eq!(pool.size(), 3);
    Ok(())
}

#[test]
fn a_shared_guest_keeps_state_across_threads_and_stays_failed() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, COUNTER)?;
    let shared = SharedGuest::new(runtime.instantiate(&module, &GuestOptions::default())?);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..25 {
                    let _ = shared.call("bump", &[]);
                }
            });
        }
    });
    assert_eq!(shared.call("bump", &[])?[0].unwrap_i32(), 101);
    assert!(shared.call("boom", &[]).is_err());
    assert!(
        shared.call("bump", &[]).is_err(),
        "no silent reset of shared state"
    );
    Ok(())
}
