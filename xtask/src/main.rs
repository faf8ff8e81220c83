//! `xtask`: build helpers that `fixtures/build.sh` calls.
//!
//! Owns one job: turning a core wasm module built by rustc (for
//! `wasm32-unknown-unknown` or `wasm32-wasip1`) into a component with
//! wit-component, optionally with wasmtime 48's preview1 reactor or command
//! adapter. Building the guests themselves is `fixtures/build.sh`'s job.
//!
//! Usage: `xtask componentize <module.wasm> <out.wasm> [--adapter reactor|command]`
//!
//! Also `xtask host-kit OUT_DIR`: the lowered fixtures with their KarmemIDL
//! and expected outcomes as JSON, for hosts in other languages
//! (docs/HOSTS.md, [`host_kit`]).

mod host_kit;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER,
    WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_component::ComponentEncoder;

/// Which preview1 adapter, if any, a module is componentized with.
#[derive(Debug, Clone, Copy)]
enum Adapter {
    None,
    Reactor,
    Command,
}

#[derive(Debug)]
struct ComponentizeArgs {
    module: PathBuf,
    output: PathBuf,
    adapter: Adapter,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.split_first() {
        Some((command, rest)) if command == "componentize" => {
            let parsed = parse_componentize_args(rest)?;
            componentize(&parsed)
        }
        Some((command, rest)) if command == "host-kit" => match rest {
            [out] => host_kit::host_kit(Path::new(out)),
            _ => bail!("usage: xtask host-kit OUT_DIR"),
        },
        Some((command, _)) => {
            bail!("unknown command `{command}`; expected `componentize` or `host-kit`")
        }
        None => {
            bail!(
                "usage: xtask componentize <module.wasm> <out.wasm> [--adapter reactor|command] | xtask host-kit OUT_DIR"
            )
        }
    }
}

fn parse_componentize_args(args: &[String]) -> Result<ComponentizeArgs> {
    let mut positional = Vec::new();
    let mut adapter = Adapter::None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--adapter" {
            let value = iter.next().context("`--adapter` needs a value")?;
            adapter = match value.as_str() {
                "reactor" => Adapter::Reactor,
                "command" => Adapter::Command,
                "none" => Adapter::None,
                other => {
                    bail!("unknown adapter `{other}`; expected `reactor`, `command` or `none`")
                }
            };
        } else {
            positional.push(PathBuf::from(arg));
        }
    }
    match <[PathBuf; 2]>::try_from(positional) {
        Ok([module, output]) => Ok(ComponentizeArgs {
            module,
            output,
            adapter,
        }),
        Err(found) => bail!(
            "expected a module path and an output path, found {} paths",
            found.len()
        ),
    }
}

fn componentize(args: &ComponentizeArgs) -> Result<()> {
    let module = read(&args.module)?;
    let mut encoder = ComponentEncoder::default()
        .module(&module)
        .with_context(|| {
            format!(
                "reading the component type section of `{}`",
                args.module.display()
            )
        })?
        .validate(true)
        .debug_names(false);
    let adapter_bytes = match args.adapter {
        Adapter::None => None,
        Adapter::Reactor => Some(WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER),
        Adapter::Command => Some(WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER),
    };
    if let Some(bytes) = adapter_bytes {
        encoder = encoder
            .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, bytes)
            .context("adding the preview1 adapter")?;
    }
    let component = encoder
        .encode()
        .with_context(|| format!("componentizing `{}`", args.module.display()))?;
    std::fs::write(&args.output, component)
        .with_context(|| format!("writing `{}`", args.output.display()))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading `{}`", path.display()))
}
