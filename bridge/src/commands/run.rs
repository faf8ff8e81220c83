//! `karmem-bridge run MODULE.wasm [--invoke 'fn(args)']... [--link OTHER.wasm]...
//! [--plug IMPORTER:IMPORT=EXPORTER[:EXPORT]]...`: run a lowered module on
//! wasmtime with the component model off.
//!
//! Owns: the command only: options, the module cache's location, naming
//! modules in `--plug` (path, file name or stem), WAVE in and out. Instantiation, the Karmem handshake, WASI preview1, linking modules
//! by pattern ([`Composition`]) and the cache itself are `karmem-runtime`'s;
//! WAVE parsing and printing are `karmem-format`'s. Without `--invoke` the
//! module's `_start` runs (a lowered command) and its exit code is ours.
//! A module lowered with `--abi canonical` is called through
//! `karmem_bridge::canonical_call` instead (docs/RUNTIME.md).
//!
//! Compiled modules are cached (docs/RUNTIME.md, "Module cache") in
//! `--cache-dir`, else `$KARMEM_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/karmem-bridge/modules`, else
//! `$HOME/.cache/karmem-bridge/modules`; `--no-cache` compiles every time.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use karmem_runtime::compose::{Composition, ModuleId};
use karmem_runtime::invoke::{Session, SessionOptions, WasiOptions};
use karmem_runtime::link::Pattern;
use karmem_runtime::{Runtime, RuntimeConfig};

use super::{display_name, read_input, write_output};

#[derive(Debug, clap::Args)]
pub struct Opts {
    /// The lowered module (`karmem-bridge lower` output).
    pub module: PathBuf,
    /// Call an exported function, WAVE in and out: `iface.fn(1, "x")`, or a
    /// bare `fn(...)` when one exported interface has it. Repeatable: the calls
    /// run in order on one instance (state such as resources and counters
    /// carries over), one result line each. Without it, `_start` runs.
    #[arg(long)]
    pub invoke: Vec<String>,
    /// Preopen a host directory for WASI, as `HOST` or `HOST::GUEST`.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    pub dirs: Vec<String>,
    /// Set a WASI environment variable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Serve `karmem:*` imports from another lowered module's exports, by
    /// the interface's pattern (repeatable; fanout reaches every linked
    /// exporter, in the order given).
    #[arg(long = "link", value_name = "OTHER.wasm")]
    pub links: Vec<PathBuf>,
    /// Override an interface's pattern: `IFACE=direct|fanout|singleton|pool[:N]`,
    /// IFACE a KarmemIDL name or a WIT interface (`a:b/x@1.0.0`)
    /// (modules lowered from WIT declare `direct`).
    #[arg(long = "pattern", value_name = "IFACE=PATTERN")]
    pub patterns: Vec<String>,
    /// Serve one module's import with another's export, whatever their names
    /// (repeatable): `IMPORTER:IMPORT=EXPORTER[:EXPORT]`. A module is named by
    /// its path as given, its file name or its file stem; IMPORT and EXPORT are
    /// both interfaces (WIT `ns:pkg/iface@1.0.0` or KarmemIDL name) or both
    /// world-level functions (`toplevel-import`); EXPORT defaults to IMPORT.
    /// Needed where names cannot tell (a world-level import wired to an export
    /// of another name) or several linked modules fit one import.
    #[arg(long = "plug", value_name = "IMPORTER:IMPORT=EXPORTER[:EXPORT]")]
    pub plugs: Vec<String>,
    /// Directory of the compiled-module cache (default: `$KARMEM_CACHE_DIR`,
    /// else `$XDG_CACHE_HOME/karmem-bridge/modules`, else `~/.cache/karmem-bridge/modules`).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Compile every module instead of using the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Per-call wall-clock budget, in seconds (e.g. `2.5`).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Maximum linear memory, in bytes (suffixes `K`, `M`, `G`: 1024-based).
    #[arg(long, value_name = "BYTES")]
    pub max_memory: Option<String>,
    /// Serve the `wasi:` imports a preview1 host cannot serve (sockets, http,
    /// ...) that `lower --wasi passthrough` kept, as `lower` does by default:
    /// the error a host without the capability gives (`access-denied`, ...),
    /// or a trap naming the import (docs/LOWERING.md, `## WASI`).
    #[arg(long)]
    pub stub_missing: bool,
    /// The program name the guest sees as its first argument (default: the module's path).
    #[arg(long, value_name = "NAME")]
    pub argv0: Option<String>,
    /// Arguments passed to the program (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

pub fn run(opts: Opts) -> Result<()> {
    let name = display_name(&opts.module);
    let bytes = stub_missing(&opts, read_input(&opts.module)?, &name)?;
    let config = RuntimeConfig { cache_dir: cache_dir(&opts), ..RuntimeConfig::default() };
    let runtime = Arc::new(Runtime::new(config)?);
    if is_canonical(&bytes)? {
        return run_canonical(&opts, &runtime, &bytes, &name);
    }
    let composition = Composition::new(runtime);
    let main = composition.add(&name, &bytes, session_options(&opts, &name)?)?;
    let mut modules = vec![(opts.module.clone(), main)];
    for path in &opts.links {
        let other = display_name(path);
        let bytes = stub_missing(&opts, read_input(path)?, &other)?;
        let id = composition.add(&other, &bytes, session_options(&opts, &other)?)?;
        modules.push((path.clone(), id));
    }
    for text in &opts.patterns {
        let (interface, pattern) = parse_pattern(text)?;
        composition.set_pattern(interface, pattern)?;
    }
    for text in &opts.plugs {
        let plug = parse_plug(text, &modules)?;
        composition
            .plug(plug.importer, &plug.import, plug.exporter, &plug.export)
            .with_context(|| format!("`--plug {text}`"))?;
    }
    let mut session = composition.instantiate(main).with_context(|| format!("failed to load `{name}`"))?;
    if opts.invoke.is_empty() {
        let code = session.run_start().with_context(|| format!("`{name}` failed"))?;
        if code != 0 {
            std::process::exit(code);
        }
        return Ok(());
    }
    // Each result is printed as soon as its call returns: a later call that
    // fails leaves the earlier lines, then the error.
    for (index, text) in opts.invoke.iter().enumerate() {
        let printed = invoke(&mut session, text).with_context(|| {
            let which = if opts.invoke.len() > 1 { format!(" (call {} of {})", index + 1, opts.invoke.len()) } else { String::new() };
            format!("`{name}`: `{text}` failed{which}")
        })?;
        write_output(Path::new("-"), format!("{printed}\n").as_bytes())?;
    }
    Ok(())
}

/// A module lowered with `--abi canonical`: it records its boundary in
/// `karmem:canonical-abi` and has no `karmem:abi` section.
fn is_canonical(bytes: &[u8]) -> Result<bool> {
    let (mut canonical, mut karmem) = (false, false);
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::CustomSection(section) = payload.context("failed to read the module")? {
            canonical |= section.name() == karmem_contract::CANONICAL_ABI_SECTION;
            karmem |= section.name() == karmem_contract::ABI_SECTION;
        }
    }
    Ok(canonical && !karmem)
}

/// `--invoke` on a `--abi canonical` module: WAVE values lowered and lifted
/// by the canonical ABI (`karmem_bridge::canonical_call`), one instance, one
/// result line per call.
fn run_canonical(opts: &Opts, runtime: &Runtime, bytes: &[u8], name: &str) -> Result<()> {
    if !opts.links.is_empty() || !opts.plugs.is_empty() || !opts.patterns.is_empty() {
        bail!("`{name}` was lowered with `--abi canonical`: `--link`, `--plug` and `--pattern` need the Karmem ABI");
    }
    if opts.invoke.is_empty() {
        bail!("`{name}` was lowered with `--abi canonical`: name the functions to call with `--invoke 'f(...)'`");
    }
    let mut caller = karmem_bridge::canonical_call::CanonicalCaller::new(runtime, bytes)
        .with_context(|| format!("failed to load `{name}`"))?;
    for (index, text) in opts.invoke.iter().enumerate() {
        let printed = caller.invoke(text).with_context(|| {
            let which = if opts.invoke.len() > 1 { format!(" (call {} of {})", index + 1, opts.invoke.len()) } else { String::new() };
            format!("`{name}`: `{text}` failed{which}")
        })?;
        write_output(Path::new("-"), format!("{printed}\n").as_bytes())?;
    }
    Ok(())
}

/// `--stub-missing`: the module with its kept uncovered `wasi:` imports stubbed.
fn stub_missing(opts: &Opts, bytes: Vec<u8>, name: &str) -> Result<Vec<u8>> {
    if !opts.stub_missing {
        return Ok(bytes);
    }
    let (stubbed, _) = karmem_adapters::wasi::stub_missing_imports(&bytes)
        .with_context(|| format!("`--stub-missing`: failed to stub the imports of `{name}`"))?;
    Ok(stubbed)
}

/// The cache directory: `--cache-dir`, `$KARMEM_CACHE_DIR`,
/// `$XDG_CACHE_HOME/karmem-bridge/modules`, `$HOME/.cache/karmem-bridge/modules`;
/// none with `--no-cache` or when no variable says where.
fn cache_dir(opts: &Opts) -> Option<PathBuf> {
    if opts.no_cache {
        return None;
    }
    let from_env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    opts.cache_dir
        .clone()
        .or_else(|| from_env("KARMEM_CACHE_DIR"))
        .or_else(|| from_env("XDG_CACHE_HOME").map(|d| d.join("karmem-bridge").join("modules")))
        .or_else(|| from_env("HOME").map(|d| d.join(".cache").join("karmem-bridge").join("modules")))
}

/// `IFACE=direct|fanout|singleton|pool[:N]` (pool without `N`: the machine's parallelism).
fn parse_pattern(text: &str) -> Result<(&str, Pattern)> {
    let (interface, pattern) =
        text.split_once('=').with_context(|| format!("`--pattern {text}`: expected `IFACE=PATTERN`"))?;
    let pattern = match pattern.split_once(':') {
        Some(("pool", size)) => {
            let size: usize = size.parse().with_context(|| format!("`--pattern {text}`: expected a pool size such as `pool:4`"))?;
            let instances = NonZeroUsize::new(size).with_context(|| format!("`--pattern {text}`: a pool needs at least one instance"))?;
            Pattern::Pool { instances }
        }
        _ => match pattern {
            "direct" => Pattern::Direct,
            "fanout" => Pattern::Fanout,
            "singleton" | "single" => Pattern::Singleton,
            "pool" => Pattern::Pool { instances: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN) },
            other => bail!("`--pattern {text}`: unknown pattern `{other}` (expected direct, fanout, singleton or pool[:N])"),
        },
    };
    Ok((interface, pattern))
}

/// One `--plug`, its modules resolved.
struct PlugArg {
    importer: ModuleId,
    import: String,
    exporter: ModuleId,
    export: String,
}

/// `IMPORTER:IMPORT=EXPORTER[:EXPORT]`. Module names are matched as whole
/// prefixes (the longest that fits), so WIT names after them may hold `:`.
fn parse_plug(text: &str, modules: &[(PathBuf, ModuleId)]) -> Result<PlugArg> {
    let usage = "expected `IMPORTER:IMPORT=EXPORTER[:EXPORT]`";
    let (left, right) = text.split_once('=').with_context(|| format!("`--plug {text}`: {usage}"))?;
    let (importer, import) = split_module(left, modules, false)
        .with_context(|| format!("`--plug {text}`: {usage}"))?;
    let (exporter, export) = split_module(right, modules, true)
        .with_context(|| format!("`--plug {text}`: {usage}"))?;
    let import = import.context("no import after the importing module")?.to_string();
    let export = export.map_or_else(|| import.clone(), str::to_string);
    Ok(PlugArg { importer, import, exporter, export })
}

/// The module `text` starts with (path as given, file name or file stem),
/// and what follows its `:`; `bare` allows the module alone.
fn split_module<'a>(text: &'a str, modules: &[(PathBuf, ModuleId)], bare: bool) -> Result<(ModuleId, Option<&'a str>)> {
    let mut found: Vec<(usize, ModuleId, Option<&'a str>)> = Vec::new();
    for (path, id) in modules {
        for alias in module_aliases(path) {
            if bare && text == alias {
                found.push((alias.len(), *id, None));
            } else if let Some(rest) = text.strip_prefix(alias.as_str()).and_then(|r| r.strip_prefix(':')) {
                found.push((alias.len(), *id, Some(rest)));
            }
        }
    }
    let longest = found.iter().map(|(len, ..)| *len).max().context("names no module given to `run`")?;
    found.retain(|(len, ..)| *len == longest);
    found.sort_by_key(|(_, id, _)| *id);
    found.dedup_by_key(|(_, id, _)| *id);
    match found.as_slice() {
        [(_, id, rest)] => Ok((*id, *rest)),
        _ => bail!("`{text}` names more than one module given to `run`: use their paths"),
    }
}

fn module_aliases(path: &Path) -> Vec<String> {
    let mut aliases = vec![path.display().to_string()];
    if let Some(name) = path.file_name() {
        aliases.push(name.to_string_lossy().into_owned());
    }
    if let Some(stem) = path.file_stem() {
        aliases.push(stem.to_string_lossy().into_owned());
    }
    aliases.dedup();
    aliases
}

/// Parses `text`, calls the function, prints its results as WAVE.
fn invoke(session: &mut Session, text: &str) -> Result<String> {
    let open = text.find('(').context("expected a call such as `add(1, 2)`")?;
    let written = text.get(..open).unwrap_or_default().trim();
    let (interface, function) = session.resolve_function(written)?;
    let abi = session.abi().context("the module has no Karmem ABI")?;
    // WAVE names are kebab-case; `parse_invocation` maps them back.
    let call = format!("{}{}", karmem_format::wave::kebab(&function), text.get(open..).unwrap_or_default());
    let parsed = karmem_format::wave::parse_invocation(&abi.layout, &interface, &call).map_err(|e| anyhow!("{e}"))?;
    let results = session.invoke(&interface, &parsed.function, &parsed.args)?;
    karmem_format::wave::print_results(&results).map_err(|e| anyhow!("cannot print the results as WAVE: {e}"))
}

fn session_options(opts: &Opts, program: &str) -> Result<SessionOptions> {
    let mut wasi = WasiOptions { inherit_stdio: true, ..WasiOptions::default() };
    wasi.args.push(opts.argv0.clone().unwrap_or_else(|| program.to_string()));
    wasi.args.extend(opts.args.iter().cloned());
    for pair in &opts.env {
        let (key, value) = pair.split_once('=').with_context(|| format!("`--env {pair}`: expected `KEY=VALUE`"))?;
        wasi.env.push((key.to_string(), value.to_string()));
    }
    for dir in &opts.dirs {
        let (host, guest) = dir.split_once("::").unwrap_or((dir.as_str(), dir.as_str()));
        wasi.dirs.push((PathBuf::from(host), guest.to_string()));
    }
    let timeout = match opts.timeout {
        Some(seconds) if seconds.is_finite() && seconds > 0.0 => Some(
            Duration::try_from_secs_f64(seconds)
                .map_err(|_| anyhow!("`--timeout {seconds}`: more seconds than a timeout can hold"))?,
        ),
        Some(seconds) => bail!("`--timeout {seconds}`: expected a positive number of seconds"),
        None => None,
    };
    let max_memory_bytes = opts.max_memory.as_deref().map(parse_bytes).transpose()?;
    Ok(SessionOptions { wasi, timeout, max_memory_bytes, ..SessionOptions::default() })
}

fn parse_bytes(text: &str) -> Result<usize> {
    let (digits, unit) = match text.char_indices().last() {
        Some((at, 'K' | 'k')) => (text.get(..at).unwrap_or_default(), 1usize << 10),
        Some((at, 'M' | 'm')) => (text.get(..at).unwrap_or_default(), 1 << 20),
        Some((at, 'G' | 'g')) => (text.get(..at).unwrap_or_default(), 1 << 30),
        _ => (text, 1),
    };
    let count: usize = digits.parse().with_context(|| format!("`--max-memory {text}`: expected a byte count such as `64M`"))?;
    count.checked_mul(unit).with_context(|| format!("`--max-memory {text}` is too large"))
}
