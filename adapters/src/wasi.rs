//! WASI at the edge of a lowered module: make it run on preview1-only hosts.
//!
//! Owns:
//! - the preview2-on-preview1 shim, a core module written in WAT
//!   (`adapters/wasi/preview2_shim.wat`) that exports the core-level WASI 0.2
//!   functions a `wasm32-wasip2` main module imports and implements them on
//!   `wasi_snapshot_preview1` imports ([`preview2_shim`]);
//! - matching an import `(module, field)` to the shim's export, with
//!   semver-compatible versions ([`classify_import`], [`resolve_import`]);
//! - linking the shim into a merged module that still imports WASI 0.2
//!   functions ([`link_preview2_shim`]);
//! - stubs, generated from the component's WIT, for the `wasi:` imports a
//!   preview1 host cannot serve (sockets, http, ...), behaving like a host
//!   that grants no such capability ([`plan_stubs`], [`apply_stubs`],
//!   `wasi_stub.rs`);
//! - `wasi:cli/run` -> `_start` ([`add_command_start`]);
//! - recognising the preview1 adapter module of a `wasm32-wasip1` component
//!   by structure ([`recognize_preview1_adapter`]).
//!
//! Does not own: parsing components, merging their core modules and dropping
//! the preview1 adapter from the instance graph (`karmem-core-lowering`,
//! `preview1.rs`, which asks [`recognize_preview1_adapter`]), nor the `--wasi`
//! flag of the CLI (`karmem-bridge lower` wires it to [`WasiMode`]). The contract is written in `docs/LOWERING.md`,
//! section `## WASI`.

#[path = "wasi_adapter.rs"]
mod adapter;
#[path = "wasi_link.rs"]
mod link;
#[path = "wasi_start.rs"]
mod start;
#[path = "wasi_stub.rs"]
mod stub;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

pub use adapter::{Preview1Adapter, recognize_preview1_adapter};
pub use link::{LinkReport, link_preview2_shim, link_preview2_shim_with};
pub use start::{add_command_start, add_command_start_to_bytes, exit_codes_as_the_component, find_run_export};
pub use stub::{
    STUBS_SECTION, StubAction, StubPlan, apply_stubs, plan_stubs, read_recorded_stubs, record_stubs,
    stub_missing_imports, stubbed_interfaces,
};

/// The import module name under which the shim asks for the main module's
/// `memory` and `cabi_realloc` (the name wit-component uses for adapters).
pub const MAIN_MODULE: &str = "__main_module__";
/// The import module of every preview1 function.
pub const PREVIEW1_MODULE: &str = "wasi_snapshot_preview1";
/// The WASI 0.2 interface whose `run` export becomes `_start`.
pub const CLI_RUN_INTERFACE: &str = "wasi:cli/run";

/// The shim's source: assembled on first use, so no built binary is committed.
const SHIM_WAT: &str = include_str!("../wasi/preview2_shim.wat");

/// What to do with a lowered module's WASI imports (`--wasi` of `lower`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasiMode {
    /// The component is `wasm32-wasip1` plus the preview1 adapter: drop the
    /// adapter and keep the main module's own `wasi_snapshot_preview1` imports.
    Preview1,
    /// Implement WASI 0.2 imports with the preview2-on-preview1 shim; refuse
    /// WASI 0.2 imports the shim does not cover.
    Shim,
    /// Like `Shim`, but WASI 0.2 imports the shim does not cover (sockets,
    /// http, ...) stay imports of the lowered module.
    Passthrough,
    /// Refuse every WASI 0.2 import the shim does not cover, naming it.
    Deny,
}

impl WasiMode {
    /// `preview1` when the component carries the preview1 adapter, else `shim`.
    pub fn default_for(has_preview1_adapter: bool) -> Self {
        if has_preview1_adapter { Self::Preview1 } else { Self::Shim }
    }
}

impl FromStr for WasiMode {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "preview1" => Ok(Self::Preview1),
            "shim" => Ok(Self::Shim),
            "passthrough" => Ok(Self::Passthrough),
            "deny" => Ok(Self::Deny),
            other => bail!("unknown wasi mode `{other}` (expected `preview1`, `shim`, `passthrough` or `deny`)"),
        }
    }
}

impl fmt::Display for WasiMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Preview1 => "preview1",
            Self::Shim => "shim",
            Self::Passthrough => "passthrough",
            Self::Deny => "deny",
        })
    }
}

/// A WASI interface name split into its parts:
/// `wasi:io/streams@0.2.6` -> package `wasi:io`, interface `streams`, version `0.2.6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceName<'a> {
    /// `wasi:io`
    pub package: &'a str,
    /// `streams`
    pub interface: &'a str,
    /// `0.2.6`, if the name carries a version.
    pub version: Option<&'a str>,
}

impl<'a> InterfaceName<'a> {
    /// Parses `ns:pkg/iface[@version]`; `None` for anything else.
    pub fn parse(name: &'a str) -> Option<Self> {
        let (path, version) = match name.split_once('@') {
            Some((path, version)) => (path, Some(version)),
            None => (name, None),
        };
        let (package, interface) = path.split_once('/')?;
        let (namespace, package_name) = package.split_once(':')?;
        if namespace.is_empty() || package_name.is_empty() || interface.is_empty() || interface.contains('/') {
            return None;
        }
        Some(Self { package, interface, version })
    }

    /// `wasi:io/streams`, without the version.
    pub fn unversioned(&self) -> String {
        format!("{}/{}", self.package, self.interface)
    }

    /// Whether the package is one of the `wasi:` packages.
    pub fn is_wasi(&self) -> bool {
        self.package.starts_with("wasi:")
    }
}

/// Whether `version` is semver-compatible with the 0.2 line the shim
/// implements: `0.2.x` with any patch, no pre-release (pre-release snapshots
/// such as `0.2.0-rc-2023-11-10` had different signatures).
pub fn is_compatible_version(version: &str) -> bool {
    let mut parts = version.splitn(3, '.');
    let (Some(major), Some(minor), Some(patch)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    major == "0" && minor == "2" && !patch.is_empty() && patch.bytes().all(|b| b.is_ascii_digit())
}

/// How one core import relates to WASI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasiImport {
    /// Not a `wasi:` interface (and not preview1): none of WASI's business.
    NotWasi,
    /// A `wasi_snapshot_preview1` function: stays an import of the output.
    Preview1,
    /// A WASI 0.2 function the shim provides under `export`.
    Shim {
        /// The shim's export name, `<interface without version>#<field>`.
        export: String,
    },
    /// A `wasi:` function the shim does not provide.
    Uncovered {
        /// `wasi:sockets/tcp`, without the version.
        interface: String,
        /// Why: not implemented, or an incompatible version.
        reason: String,
    },
}

/// Classifies the core import `module`/`field` (for example
/// `wasi:io/streams@0.2.0` / `[method]output-stream.write`).
pub fn classify_import(module: &str, field: &str) -> Result<WasiImport> {
    if module == PREVIEW1_MODULE {
        return Ok(WasiImport::Preview1);
    }
    let Some(name) = InterfaceName::parse(module).filter(InterfaceName::is_wasi) else {
        return Ok(WasiImport::NotWasi);
    };
    let interface = name.unversioned();
    let Some(version) = name.version else {
        return Ok(WasiImport::Uncovered { interface, reason: "the import names no version".to_string() });
    };
    if !is_compatible_version(version) {
        return Ok(WasiImport::Uncovered {
            interface,
            reason: format!("version `{version}` is not compatible with 0.2"),
        });
    }
    let export = format!("{interface}#{field}");
    if shim_exports()?.contains(&export) {
        Ok(WasiImport::Shim { export })
    } else {
        Ok(WasiImport::Uncovered { interface, reason: format!("the shim does not implement `{field}`") })
    }
}

/// What the lowering does with one import under `mode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WasiResolution {
    /// Leave the import as it is (not WASI, preview1, or passed through).
    Keep,
    /// Satisfy it with the shim export of this name.
    Shim {
        /// The shim's export name.
        export: String,
    },
}

/// Resolves one import under `mode`; errors name the interface and the way out.
pub fn resolve_import(mode: WasiMode, module: &str, field: &str) -> Result<WasiResolution> {
    match classify_import(module, field)? {
        WasiImport::NotWasi | WasiImport::Preview1 => Ok(WasiResolution::Keep),
        WasiImport::Shim { export } => match mode {
            WasiMode::Preview1 => bail!(
                "`{module}#{field}` is a WASI 0.2 import that does not belong to the preview1 adapter, \
                 which `--wasi preview1` cannot keep (it only drops the adapter of a wasm32-wasip1 component); \
                 use `--wasi shim`"
            ),
            WasiMode::Shim | WasiMode::Passthrough | WasiMode::Deny => Ok(WasiResolution::Shim { export }),
        },
        WasiImport::Uncovered { interface, reason } => match mode {
            WasiMode::Passthrough => Ok(WasiResolution::Keep),
            WasiMode::Preview1 | WasiMode::Shim | WasiMode::Deny => bail!(
                "WASI interface `{interface}` is not available on preview1 hosts \
                 (import `{module}#{field}`: {reason}); `--wasi passthrough` keeps it as an import"
            ),
        },
    }
}

/// What [`finish_for_preview1`] produced.
#[derive(Debug, Clone)]
pub struct Preview1Module {
    /// The module: WASI 0.2 imports linked to the shim, `_start` for commands.
    pub module: Vec<u8>,
    /// What the linker did.
    pub report: LinkReport,
    /// Whether the module is a preview1 command: `wasi:cli/run` became
    /// `_start`, or it already exported `_start` (a dropped command adapter).
    pub is_command: bool,
    /// Uncovered `wasi:` imports replaced by stubs ([`Finish::stubs`]), as `module#field`.
    pub stubbed: Vec<String>,
}

/// How [`finish_for_preview1_with`] treats the module's WASI imports.
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    pub mode: WasiMode,
    /// The stubs of the component's `wasi:` imports ([`plan_stubs`]). Under
    /// `Shim`, imports a preview1 host cannot serve are replaced by them
    /// instead of refused; under `Passthrough`, they are kept and their
    /// plan is recorded ([`STUBS_SECTION`]) for `run --stub-missing`.
    pub stubs: Option<&'a StubPlan>,
    /// The lowering dropped the preview1 adapter (the module's own
    /// `proc_exit` reports the code the component runtime would).
    pub adapter_dropped: bool,
}

/// The WASI step of `lower` after merging: link the shim
/// ([`link_preview2_shim_with`]), then turn a `wasi:cli/run@0.2.x#run` export
/// into `_start` ([`add_command_start`]). Under [`WasiMode::Preview1`] (the
/// lowering dropped the preview1 adapter) there is nothing to link, any
/// WASI 0.2 import left is refused, and the program's `proc_exit` reports
/// the code the component runtime would ([`exit_codes_as_the_component`]).
pub fn finish_for_preview1(
    lowered: &[u8],
    mode: WasiMode,
    realloc_of: &dyn Fn(&str, &str) -> String,
) -> Result<Preview1Module> {
    let finish = Finish { mode, stubs: None, adapter_dropped: mode == WasiMode::Preview1 };
    finish_for_preview1_with(lowered, &finish, realloc_of)
}

/// [`finish_for_preview1`] with stubs for the imports a preview1 host cannot
/// serve, and for an output whose adapter was dropped but that still imports
/// WASI 0.2 (`finish.adapter_dropped` under `Shim`: linked to the shim and
/// the stubs, `proc_exit` as the component).
pub fn finish_for_preview1_with(
    lowered: &[u8],
    finish: &Finish<'_>,
    realloc_of: &dyn Fn(&str, &str) -> String,
) -> Result<Preview1Module> {
    let link_mode = match (finish.mode, finish.stubs) {
        (WasiMode::Shim, Some(_)) => WasiMode::Passthrough,
        (mode, _) => mode,
    };
    let (linked, mut report) = link_preview2_shim_with(lowered, link_mode, realloc_of)?;
    let mut module = walrus::Module::from_buffer(&linked).context("failed to re-read the linked module")?;
    let mut stubbed = Vec::new();
    match (finish.mode, finish.stubs) {
        (WasiMode::Shim, Some(plan)) => {
            stubbed = apply_stubs(&mut module, plan)?;
            report.passed_through.retain(|import| !stubbed.contains(import));
        }
        (WasiMode::Passthrough, Some(plan)) => {
            record_stubs(&mut module, plan)?;
        }
        _ => {}
    }
    if finish.adapter_dropped || finish.mode == WasiMode::Preview1 {
        exit_codes_as_the_component(&mut module)?;
    }
    // Under `--wasi preview1` the lowering already exports the main module's `_start`.
    let is_command =
        add_command_start(&mut module)?.is_some() || module.exports.iter().any(|export| export.name == "_start");
    Ok(Preview1Module { module: module.emit_wasm(), report, is_command, stubbed })
}

/// The shim core module (assembled once from its WAT source).
pub fn preview2_shim() -> Result<&'static [u8]> {
    static SHIM: OnceLock<std::result::Result<Vec<u8>, String>> = OnceLock::new();
    let built = SHIM.get_or_init(|| wat::parse_str(SHIM_WAT).map_err(|error| format!("{error:#}")));
    match built {
        Ok(bytes) => Ok(bytes),
        Err(message) => bail!("failed to assemble the preview2 shim: {message}"),
    }
}

/// The names the shim exports.
pub fn shim_exports() -> Result<&'static BTreeSet<String>> {
    static EXPORTS: OnceLock<std::result::Result<BTreeSet<String>, String>> = OnceLock::new();
    let exports = EXPORTS.get_or_init(|| collect_exports(SHIM_WAT).map_err(|error| format!("{error:#}")));
    match exports {
        Ok(names) => Ok(names),
        Err(message) => bail!("failed to read the preview2 shim's exports: {message}"),
    }
}

fn collect_exports(_source: &str) -> Result<BTreeSet<String>> {
    let bytes = preview2_shim()?;
    let mut names = BTreeSet::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        if let wasmparser::Payload::ExportSection(section) = payload.context("parsing the shim")? {
            for export in section {
                names.insert(export.context("parsing the shim's exports")?.name.to_string());
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_match_by_semver() {
        assert!(is_compatible_version("0.2.0"));
        assert!(is_compatible_version("0.2.6"));
        assert!(!is_compatible_version("0.3.0"));
        assert!(!is_compatible_version("0.2.0-rc-2023-11-10"));
        assert!(!is_compatible_version("1.2.0"));
        assert!(!is_compatible_version("0.2"));
    }

    #[test]
    fn imports_classify() -> Result<()> {
        assert_eq!(
            classify_import("wasi:io/streams@0.2.4", "[method]output-stream.write")?,
            WasiImport::Shim { export: "wasi:io/streams#[method]output-stream.write".to_string() }
        );
        assert_eq!(classify_import("wasi_snapshot_preview1", "fd_write")?, WasiImport::Preview1);
        assert_eq!(classify_import("env", "f")?, WasiImport::NotWasi);
        assert_eq!(classify_import("my:pkg/iface@1.0.0", "f")?, WasiImport::NotWasi);
        assert!(matches!(
            classify_import("wasi:sockets/tcp@0.2.0", "[method]tcp-socket.start-bind")?,
            WasiImport::Uncovered { .. }
        ));
        assert!(matches!(classify_import("wasi:io/streams@0.3.0", "x")?, WasiImport::Uncovered { .. }));
        Ok(())
    }

    #[test]
    fn modes_decide_uncovered_imports() -> Result<()> {
        let sockets = ("wasi:sockets/tcp@0.2.0", "[method]tcp-socket.start-bind");
        assert_eq!(resolve_import(WasiMode::Passthrough, sockets.0, sockets.1)?, WasiResolution::Keep);
        let denied = resolve_import(WasiMode::Deny, sockets.0, sockets.1);
        let message = format!("{:#}", denied.err().context("deny must refuse sockets")?);
        assert!(message.contains("`wasi:sockets/tcp`"), "{message}");
        assert!(resolve_import(WasiMode::Preview1, "wasi:cli/stdout@0.2.0", "get-stdout").is_err());
        assert_eq!("deny".parse::<WasiMode>()?, WasiMode::Deny);
        assert!("other".parse::<WasiMode>().is_err());
        Ok(())
    }
}
