//! Component to one core module.
//!
//! Owns: parsing a component into an instance graph (`parse`, `inline`,
//! `graph`), resolving every core import to its provider and merging all
//! instantiated core modules into one (`merge`, then `link` with walrus),
//! canonical builtins included (`builtins`), and describing components and
//! lowered modules (`inspect`). The phases and invariants are written up in
//! `docs/LOWERING.md`.
//!
//! Does not own: the Karmem ABI at the module's edge (`karmem-adapters`),
//! or turning WIT into the IDL text embedded as `karmem:idl`
//! (`karmem-wit-import`; callers pass the text in [`Options::idl`]).
//!
//! ```
//! let component = wat::parse_str(r#"
//!   (component
//!     (core module $m (func (export "f") (result i32) i32.const 7))
//!     (core instance $i (instantiate $m))
//!     (func (export "seven") (result u32) (canon lift (core func $i "f"))))
//! "#)?;
//! let lowered = karmem_core_lowering::lower(&component, &karmem_core_lowering::Options::default())?;
//! let interfaces = karmem_core_lowering::inspect::lowered_module(&lowered)?;
//! assert!(interfaces.exports.iter().any(|e| e.name == "seven"));
//! # Ok::<(), anyhow::Error>(())
//! ```

use anyhow::{Context, Result, bail};

pub mod adapter;
pub mod builtins;
mod exceptions;
pub mod graph;
pub mod inline;
pub mod inspect;
pub mod link;
pub mod merge;
pub mod module_info;
pub mod parse;
pub mod preview1;
pub mod reps_in_place;
pub mod types;

/// The ABI at the lowered module's edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Abi {
    /// Canonical-ABI flat signatures: exports named as the component's
    /// export functions, imports named by interface.
    #[default]
    Canonical,
    /// The Karmem ABI (`docs/ABI.md`); not implemented yet.
    Karmem,
}

/// How to lower.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub abi: Abi,
    /// Allow instances that own separate memories to stay separate
    /// memories of one multi-memory module.
    pub multi_memory: bool,
    /// The IDL text embedded as the `karmem:idl` custom section. `None`
    /// embeds an empty section (the caller has no IDL for this component).
    pub idl: Option<String>,
}

/// Lower a component binary into one core module binary.
pub fn lower(component: &[u8], options: &Options) -> Result<Vec<u8>> {
    Ok(lower_with_stats(component, options)?.0)
}

/// What a lowering did, for `inspect` and tests.
#[derive(Debug, Clone, Copy, Default)]
pub struct LowerStats {
    pub module_instances: usize,
    pub aliases: usize,
    pub shims_resolved: usize,
}

/// [`lower`], also returning what it did.
pub fn lower_with_stats(component: &[u8], options: &Options) -> Result<(Vec<u8>, LowerStats)> {
    if options.abi == Abi::Karmem {
        bail!(
            "`--abi karmem` is not implemented yet: the Karmem ABI adapters are not written; \
             use `--abi canonical`"
        );
    }
    let parsed = parse::parse(component)?;
    let (graph, infos) = inline::Inliner::new(&parsed).run().context("failed to evaluate the component")?;
    let merged = merge::merge(&parsed, &graph, &infos, options).context("failed to merge the core modules")?;
    finish(merged, &graph, options)
}

/// [`lower_with_stats`] for a `wasm32-wasip1` component under `--wasi preview1`:
/// the core module `recognise` accepts as the preview1 adapter is dropped and
/// the main module's `wasi_snapshot_preview1` imports become the output's
/// (`preview1`). `None` when no module is recognised.
pub fn lower_dropping_preview1_adapter(
    component: &[u8],
    options: &Options,
    recognise: preview1::Recognise<'_>,
) -> Result<Option<(Vec<u8>, preview1::Preview1Report)>> {
    if options.abi == Abi::Karmem {
        bail!("`--abi karmem` is not implemented yet: use `--abi canonical`");
    }
    let parsed = parse::parse(component)?;
    let (graph, infos) = inline::Inliner::new(&parsed).run().context("failed to evaluate the component")?;
    let Some((graph, mut report)) = preview1::drop_adapter(&parsed, &graph, &infos, recognise)
        .context("failed to drop the preview1 adapter")?
    else {
        return Ok(None);
    };
    let merged = merge::merge(&parsed, &graph, &infos, options).context("failed to merge the core modules")?;
    let (bytes, _) = finish(merged, &graph, options)?;
    let bytes = preview1::finish_module(&bytes, &mut report)?;
    wasmparser::Validator::new_with_features(output_features(options))
        .validate_all(&bytes)
        .context("internal error: the lowered module does not validate after exporting its memory")?;
    Ok(Some((bytes, report)))
}

fn finish(merged: merge::Merged, graph: &graph::Graph, options: &Options) -> Result<(Vec<u8>, LowerStats)> {
    let idl = options.idl.as_deref().unwrap_or("");
    let throws = exceptions::can_throw(merged.sections.tags.len());
    let (mut bytes, link_stats) = link::link(&merged, graph, idl).context("failed to link the merged module")?;
    if throws {
        // An exception no component catches traps where it would leave
        // the module, as at every other component boundary (`exceptions`).
        bytes = exceptions::guard_exports(&bytes).context("failed to guard the exports against exceptions")?;
    }
    wasmparser::Validator::new_with_features(output_features(options))
        .validate_all(&bytes)
        .context("internal error: the lowered module does not validate")?;
    Ok((
        bytes,
        LowerStats {
            module_instances: graph.instances.len(),
            aliases: graph.alias_count,
            shims_resolved: link_stats.shims_resolved,
        },
    ))
}

/// The features the output may use: standard wasm, plus multi-memory
/// only when asked for.
pub fn output_features(options: &Options) -> wasmparser::WasmFeatures {
    let mut features = wasmparser::WasmFeatures::default();
    features.set(wasmparser::WasmFeatures::MULTI_MEMORY, options.multi_memory);
    features
}

/// Binary input as is; WebAssembly text is parsed to binary first.
pub fn binary_input(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    wat::parse_bytes(bytes).context("the input is neither a WebAssembly binary nor valid WebAssembly text")
}

/// Print a core module as WebAssembly text.
pub fn to_wat(bytes: &[u8]) -> Result<String> {
    wasmprinter::print_bytes(bytes).context("failed to print the module as text")
}
