//! The on-disk cache of compiled modules, loaded through wasmtime's
//! serialized-module mmap path (`Module::deserialize_file`).
//!
//! Layout of the cache directory, one pair of files per entry:
//! - `<key>.cwasm`: `Module::serialize` output, mapped on load;
//! - `<key>.sha256`: hex SHA-256 of the `.cwasm` file, checked before mapping.
//!
//! `key` is the SHA-256 of a format tag, the wasmtime version, the engine's
//! precompile-compatibility hash (target, tunables, enabled features) and the
//! module bytes, so a different engine config never even looks at another's
//! entry. Entries are written to a temporary file and renamed into place, and
//! never modified afterwards: `deserialize_file` requires the file to stay
//! unchanged while mapped. A missing, corrupt (digest mismatch) or
//! incompatible (wasmtime refuses it) entry falls back to compiling and
//! rewrites the entry; it never panics.
//!
//! Trust: the cache directory must be writable only by the host's user.
//! wasmtime executes the mapped code as is; the digest catches truncation
//! and bit rot, not an attacker who can write both files.

use std::fs;
use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::WasmtimeResultExt;
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// How a module was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Mapped from a valid cache entry.
    Hit,
    /// No entry: compiled and stored.
    Miss,
    /// An entry existed but was unusable (the reason says why): compiled and
    /// replaced.
    Recovered(String),
    /// Compiled; the runtime has no cache directory.
    Uncached,
    /// Compiled, but the entry could not be written (the reason says why).
    NotStored(String),
}

/// A directory of compiled modules for one engine configuration.
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
}

const FORMAT_TAG: &[u8] = b"karmem-runtime module cache v1\0";

impl ModuleCache {
    /// Uses (and creates if needed) `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create the module cache `{}`", dir.display()))?;
        Ok(ModuleCache { dir })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry key of `bytes` for `engine`, as lower-case hex.
    pub fn key(engine: &Engine, bytes: &[u8]) -> String {
        ModuleCache::variant_key(engine, bytes, "")
    }

    /// The entry key of `bytes` transformed by the runtime (`variant` names
    /// the transformation, e.g. the bulk-memory rewrite) before compiling.
    pub fn variant_key(engine: &Engine, bytes: &[u8], variant: &str) -> String {
        let mut hasher = ShaHasher(Sha256::new());
        hasher.0.update(FORMAT_TAG);
        hasher.0.update(variant.as_bytes());
        hasher.0.update(b"\0");
        hasher.0.update(env!("CARGO_PKG_VERSION").as_bytes());
        // Covers target, compiler flags, tunables, features and the wasmtime
        // version (`module_version`).
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        hasher.0.update(b"\0module\0");
        hasher.0.update(bytes);
        hex(&hasher.0.finalize())
    }

    /// Path of the compiled artifact for `key`.
    pub fn artifact_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.cwasm"))
    }

    /// Path of the artifact's digest for `key`.
    pub fn digest_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.sha256"))
    }

    /// Loads `bytes` (a binary module) through the cache.
    pub fn load(&self, engine: &Engine, bytes: &[u8]) -> Result<(Module, CacheOutcome)> {
        self.load_variant(engine, bytes, "", || {
            Module::new(engine, bytes)
                .into_anyhow()
                .context("failed to compile the module")
        })
    }

    /// Loads the entry of `bytes` under `variant`, calling `compile` (which
    /// transforms and compiles) only when there is no usable entry.
    pub fn load_variant(
        &self,
        engine: &Engine,
        bytes: &[u8],
        variant: &str,
        compile: impl FnOnce() -> Result<Module>,
    ) -> Result<(Module, CacheOutcome)> {
        let key = ModuleCache::variant_key(engine, bytes, variant);
        let outcome = match self.try_load(engine, &key) {
            Ok(Some(module)) => return Ok((module, CacheOutcome::Hit)),
            Ok(None) => CacheOutcome::Miss,
            Err(reason) => CacheOutcome::Recovered(format!("{reason:#}")),
        };
        let module = compile()?;
        // A cache that cannot be written costs speed, not correctness.
        if let Err(e) = self.store(&key, &module) {
            let reason = format!("failed to write module cache entry `{key}`: {e:#}");
            return Ok((module, CacheOutcome::NotStored(reason)));
        }
        Ok((module, outcome))
    }

    /// `Ok(None)`: no entry. `Err`: an entry that cannot be used.
    fn try_load(&self, engine: &Engine, key: &str) -> Result<Option<Module>> {
        let artifact = self.artifact_path(key);
        let expected = match fs::read_to_string(self.digest_path(key)) {
            Ok(text) => text.trim().to_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("failed to read the entry's digest"),
        };
        let contents = match fs::read(&artifact) {
            Ok(contents) => contents,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("failed to read the entry"),
        };
        let actual = hex(&Sha256::digest(&contents));
        anyhow::ensure!(
            actual == expected,
            "the entry is corrupt: its digest is {actual}, expected {expected}"
        );
        drop(contents);
        // SAFETY: the file was produced by `Module::serialize` (the digest
        // written beside it matches), entries are written by rename and never
        // modified in place, and the cache directory is trusted (module docs).
        // wasmtime itself checks the header, version and engine
        // compatibility, and returns an error on a mismatch.
        let module = unsafe { Module::deserialize_file(engine, &artifact) }
            .into_anyhow()
            .context("wasmtime refused the entry")?;
        Ok(Some(module))
    }

    fn store(&self, key: &str, module: &Module) -> Result<()> {
        let serialized = module
            .serialize()
            .into_anyhow()
            .context("failed to serialize the module")?;
        let digest = hex(&Sha256::digest(&serialized));
        // Digest first: a reader that sees the new artifact also sees its
        // digest; one that sees the new digest with an old artifact reports
        // corruption and recompiles, which is safe.
        self.write_atomically(&self.digest_path(key), digest.as_bytes())?;
        self.write_atomically(&self.artifact_path(key), &serialized)?;
        Ok(())
    }

    fn write_atomically(&self, path: &Path, contents: &[u8]) -> Result<()> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let temp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = fs::File::create(&temp)
            .with_context(|| format!("failed to create `{}`", temp.display()))?;
        file.write_all(contents)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("failed to write `{}`", temp.display()))?;
        drop(file);
        if let Err(e) = fs::rename(&temp, path) {
            let _ = fs::remove_file(&temp);
            return Err(e)
                .with_context(|| format!("failed to move `{}` into place", path.display()));
        }
        Ok(())
    }
}

/// Feeds `Hash` impls into SHA-256, so the engine's compatibility hash (only
/// available as `impl Hash`) is keyed by a stable function rather than the
/// std hasher, whose algorithm may change between Rust releases.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        // Never used: the digest is read from the inner state.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
