//! Containment: timeouts, memory limits, fuel, and traps that stay inside
//! their guest.

use std::time::Duration;

use anyhow::{Context, Result};
use karmem_runtime::{Failure, GuestLimits, GuestOptions, Runtime, RuntimeConfig};
use wasmtime::Val;

use crate::common::{load, runtime};

const SPIN: &str = r#"(module
  (memory (export "memory") 1 8)
  (func (export "spin") (loop $forever (br $forever)))
  (func (export "answer") (result i32) (i32.const 42))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "boom") unreachable))"#;

fn limited(limits: GuestLimits) -> GuestOptions {
    GuestOptions {
        limits,
        ..GuestOptions::default()
    }
}

#[test]
fn timeout_stops_an_infinite_loop() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, SPIN)?;
    let options = limited(GuestLimits {
        timeout: Some(Duration::from_millis(20)),
        ..GuestLimits::default()
    });
    let mut runaway = runtime.instantiate(&module, &options)?;
    let mut bystander = runtime.instantiate(&module, &options)?;

    let err = runaway
        .call("spin", &[])
        .err()
        .context("the loop must be interrupted")?;
    assert_eq!(Failure::of(&err), Failure::Timeout, "{err:?}");
    assert!(
        format!("{err:#}").contains("call to `spin` failed"),
        "{err:#}"
    );

    // The host and other guests are unaffected; the runaway is retired.
    assert_eq!(bystander.call("answer", &[])?[0].unwrap_i32(), 42);
    let refused = runaway
        .call("answer", &[])
        .err()
        .context("poisoned guests refuse calls")?;
    assert_eq!(Failure::of(&refused), Failure::Host);
    assert!(format!("{refused:#}").contains("unusable"), "{refused:#}");
    Ok(())
}

#[test]
fn timeout_covers_the_start_function() -> Result<()> {
    let runtime = runtime()?;
    let module = load(
        &runtime,
        r#"(module (func $start (loop $l (br $l))) (start $start))"#,
    )?;
    let err = runtime
        .instantiate(
            &module,
            &limited(GuestLimits {
                timeout: Some(Duration::from_millis(10)),
                ..GuestLimits::default()
            }),
        )
        .err()
        .context("a looping start function must be interrupted")?;
    assert_eq!(Failure::of(&err), Failure::Timeout, "{err:?}");
    Ok(())
}

#[test]
fn memory_limit_refuses_growth_and_oversized_memories() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, SPIN)?;
    let mut guest = runtime.instantiate(
        &module,
        &limited(GuestLimits {
            max_memory_bytes: Some(3 * 0x10000),
            ..GuestLimits::default()
        }),
    )?;
    assert_eq!(
        guest.call("grow", &[Val::I32(2)])?[0].unwrap_i32(),
        1,
        "1 -> 3 pages fits"
    );
    assert_eq!(
        guest.call("grow", &[Val::I32(1)])?[0].unwrap_i32(),
        -1,
        "4 pages do not"
    );
    assert_eq!(guest.memory_size()?, 3 * 0x10000);
    assert!(
        guest.poisoned().is_none(),
        "a refused grow is not a failure"
    );

    let big = load(&runtime, r#"(module (memory 16))"#)?;
    let err = runtime
        .instantiate(
            &big,
            &limited(GuestLimits {
                max_memory_bytes: Some(8 * 0x10000),
                ..GuestLimits::default()
            }),
        )
        .err()
        .context("a memory whose minimum exceeds the limit must be refused")?;
    assert!(format!("{err:#}").contains("instantiate"), "{err:#}");
    Ok(())
}

#[test]
fn fuel_stops_a_loop_and_needs_a_fuel_runtime() -> Result<()> {
    let fueled = Runtime::new(RuntimeConfig {
        fuel: true,
        ..RuntimeConfig::default()
    })?;
    let module = load(&fueled, SPIN)?;
    let options = limited(GuestLimits {
        fuel: Some(10_000),
        ..GuestLimits::default()
    });
    let mut guest = fueled.instantiate(&module, &options)?;
    let err = guest.call("spin", &[]).err().context("fuel must run out")?;
    assert_eq!(Failure::of(&err), Failure::OutOfFuel, "{err:?}");

    // Each call gets a fresh budget.
    let mut other = fueled.instantiate(&module, &options)?;
    for _ in 0..3 {
        assert_eq!(other.call("answer", &[])?[0].unwrap_i32(), 42);
    }
    assert!(other.fuel_left().context("fuel is metered")? < 10_000);

    let plain = runtime()?;
    let module = load(&plain, SPIN)?;
    let err = plain
        .instantiate(&module, &options)
        .err()
        .context("fuel limits need fuel metering")?;
    assert!(format!("{err:#}").contains("fuel metering"), "{err:#}");
    Ok(())
}

#[test]
fn a_trap_stays_inside_its_guest() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, SPIN)?;
    let mut faulty = runtime.instantiate(&module, &GuestOptions::default())?;
    let mut healthy = runtime.instantiate(&module, &GuestOptions::default())?;
    let err = faulty
        .call("boom", &[])
        .err()
        .context("unreachable must trap")?;
    assert_eq!(
        Failure::of(&err),
        Failure::Trap(wasmtime::Trap::UnreachableCodeReached)
    );
    assert_eq!(healthy.call("answer", &[])?[0].unwrap_i32(), 42);
    assert!(faulty.call("nope", &[]).is_err());
    Ok(())
}

#[test]
fn timeouts_keep_working_after_the_runtime_value_is_dropped() -> Result<()> {
    let runtime = runtime()?;
    let module = load(&runtime, SPIN)?;
    let mut guest = runtime.instantiate(
        &module,
        &limited(GuestLimits {
            timeout: Some(Duration::from_millis(10)),
            ..GuestLimits::default()
        }),
    )?;
    drop(runtime);
    let err = guest
        .call("spin", &[])
        .err()
        .context("the loop must still be interrupted")?;
    assert_eq!(Failure::of(&err), Failure::Timeout);
    Ok(())
}
