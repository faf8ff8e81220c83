//! The compiled-module cache: hit, miss, corrupt and incompatible entries.

use std::fs;

use anyhow::{Context, Result};
use karmem_runtime::{CacheOutcome, GuestOptions, ModuleCache, Runtime, RuntimeConfig};

use crate::common::MESSAGE_MODULE;

fn cached_runtime(dir: &std::path::Path, fuel: bool) -> Result<Runtime> {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.to_owned()),
        fuel,
        ..RuntimeConfig::default()
    })
}

/// The loaded module works (whatever path produced it).
fn assert_runs(runtime: &Runtime, module: &karmem_runtime::LoadedModule) -> Result<()> {
    let mut guest = runtime.instantiate(module, &GuestOptions::default())?;
    guest.call("poke", &[wasmtime::Val::I32(64), wasmtime::Val::I64(5)])?;
    let value = guest
        .call("peek", &[wasmtime::Val::I32(64)])?
        .first()
        .and_then(wasmtime::Val::i64)
        .context("`peek` returns an i64")?;
    anyhow::ensure!(value == 5, "the module misbehaves after loading: {value}");
    Ok(())
}

#[test]
fn miss_then_hit_across_runtimes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bytes = wat::parse_str(MESSAGE_MODULE)?;
    let first = cached_runtime(dir.path(), false)?;
    let module = first.load(&bytes)?;
    assert_eq!(module.cache_outcome(), &CacheOutcome::Miss);
    assert_runs(&first, &module)?;

    let second = cached_runtime(dir.path(), false)?;
    let module = second.load(&bytes)?;
    assert_eq!(module.cache_outcome(), &CacheOutcome::Hit);
    assert_runs(&second, &module)?;

    // Different bytes, different entry.
    let other = wat::parse_str("(module (func (export \"f\")))")?;
    assert_eq!(second.load(&other)?.cache_outcome(), &CacheOutcome::Miss);
    Ok(())
}

#[test]
fn corrupt_entry_is_recompiled_without_panic() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bytes = wat::parse_str(MESSAGE_MODULE)?;
    let runtime = cached_runtime(dir.path(), false)?;
    runtime.load(&bytes)?;
    let cache = runtime.cache().context("the runtime has a cache")?;
    let key = ModuleCache::key(runtime.engine(), &bytes);

    // Flip bytes in the middle of the artifact.
    let artifact = cache.artifact_path(&key);
    let mut contents = fs::read(&artifact)?;
    let middle = contents.len() / 2;
    for byte in contents.iter_mut().skip(middle).take(64) {
        *byte ^= 0xa5;
    }
    fs::write(&artifact, &contents)?;
    let module = runtime.load(&bytes)?;
    match module.cache_outcome() {
        CacheOutcome::Recovered(reason) => assert!(reason.contains("corrupt"), "{reason}"),
        other => anyhow::bail!("expected a recovered entry, got {other:?}"),
    }
    assert_runs(&runtime, &module)?;
    // The entry was rewritten.
    assert_eq!(runtime.load(&bytes)?.cache_outcome(), &CacheOutcome::Hit);

    // Truncated to nothing.
    fs::write(&artifact, b"")?;
    assert!(matches!(
        runtime.load(&bytes)?.cache_outcome(),
        CacheOutcome::Recovered(_)
    ));

    // A missing digest is a plain miss.
    fs::remove_file(cache.digest_path(&key))?;
    assert_eq!(runtime.load(&bytes)?.cache_outcome(), &CacheOutcome::Miss);
    Ok(())
}

#[test]
fn incompatible_entry_is_refused_by_wasmtime_and_recompiled() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bytes = wat::parse_str(MESSAGE_MODULE)?;
    let fueled = cached_runtime(dir.path(), true)?;
    let plain = cached_runtime(dir.path(), false)?;
    let fueled_key = ModuleCache::key(fueled.engine(), &bytes);
    let plain_key = ModuleCache::key(plain.engine(), &bytes);
    assert_ne!(
        fueled_key, plain_key,
        "the engine config is part of the key"
    );

    // Put the fuel engine's artifact (with its valid digest) where the plain
    // engine looks.
    fueled.load(&bytes)?;
    let cache = plain.cache().context("the runtime has a cache")?;
    fs::copy(
        cache.artifact_path(&fueled_key),
        cache.artifact_path(&plain_key),
    )?;
    fs::copy(
        cache.digest_path(&fueled_key),
        cache.digest_path(&plain_key),
    )?;

    let module = plain.load(&bytes)?;
    match module.cache_outcome() {
        CacheOutcome::Recovered(reason) => assert!(reason.contains("wasmtime refused"), "{reason}"),
        other => anyhow::bail!("expected a recovered entry, got {other:?}"),
    }
    assert_runs(&plain, &module)?;
    assert_eq!(plain.load(&bytes)?.cache_outcome(), &CacheOutcome::Hit);
    Ok(())
}

#[test]
fn without_a_cache_modules_are_compiled() -> Result<()> {
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let module = runtime.load(&wat::parse_str(MESSAGE_MODULE)?)?;
    assert_eq!(module.cache_outcome(), &CacheOutcome::Uncached);
    assert!(runtime.load(b"\0asm garbage").is_err());
    Ok(())
}

#[test]
fn an_unwritable_cache_still_loads_modules() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cache_dir = dir.path().join("cache");
    let runtime = cached_runtime(&cache_dir, false)?;
    // Replace the directory with a file: every write now fails.
    fs::remove_dir(&cache_dir)?;
    fs::write(&cache_dir, b"not a directory")?;
    let module = runtime.load(&wat::parse_str(MESSAGE_MODULE)?)?;
    match module.cache_outcome() {
        CacheOutcome::NotStored(reason) => assert!(reason.contains("failed to write"), "{reason}"),
        other => anyhow::bail!("expected an unstored entry, got {other:?}"),
    }
    assert_runs(&runtime, &module)
}
