//! `karmem-bridge decode` and `karmem-bridge encode`: Karmem messages to and
//! from WAVE text, for one named type of a KarmemIDL schema.
//!
//! `decode` validates the message first (docs/FORMAT.md §9; the work budget
//! is 16 MiB plus 8 per byte of the message, the ABI's decode limit), so a hostile message — overlapping or cyclic offsets, giant
//! lengths, nesting past the depth limit — is refused with the rule it
//! breaks and the byte offset where, never followed.
//!
//! Owns: the two commands. The codec is `karmem_format::value`, the text
//! form `karmem_format::wave`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow};
use karmem_format::wave::{self, ValueType};
use karmem_format::{Layout, Limits, TypeId};

/// The validation budget of `decode` (`Limits::max_visit`): this many bytes
/// and elements, plus [`DECODE_BUDGET_PER_BYTE`] per byte of the message.
const DECODE_BASE_BUDGET: u64 = 16 << 20;
const DECODE_BUDGET_PER_BYTE: u64 = 8;

#[derive(Debug, clap::Args)]
pub struct DecodeOpts {
    /// The KarmemIDL file the message follows (`-` reads stdin).
    pub schema: PathBuf,
    /// The message's root type, a named type of the schema.
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    pub ty: String,
    /// The message (`-` reads stdin).
    pub message: PathBuf,
    /// Where to write the WAVE text (`-` or absent: stdout).
    #[arg(short, long, default_value = "-")]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct EncodeOpts {
    /// The KarmemIDL file the message follows (`-` reads stdin).
    pub schema: PathBuf,
    /// The message's root type, a named type of the schema.
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    pub ty: String,
    /// The value as WAVE text (`-` reads it from stdin).
    pub value: String,
    /// Where to write the message (`-` or absent: stdout).
    #[arg(short, long, default_value = "-")]
    pub output: PathBuf,
}

pub fn decode(opts: DecodeOpts) -> Result<()> {
    if super::is_stdio(&opts.schema) && super::is_stdio(&opts.message) {
        return Err(anyhow!("the schema and the message cannot both be read from stdin (`-`)"));
    }
    let (layout, root) = root_type(&opts.schema, &opts.ty)?;
    let bytes = super::read_input(&opts.message)?;
    let name = super::display_name(&opts.message);
    // The value is built in memory: like the ABI's decode limit (ABI.md §7),
    // the work allowed grows with the message, so a few hostile bytes cannot
    // stand for gigabytes of zero values.
    let budget = DECODE_BASE_BUDGET.saturating_add(DECODE_BUDGET_PER_BYTE.saturating_mul(bytes.len() as u64));
    let limits = Limits { max_visit: budget.min(Limits::default().max_visit), ..Limits::default() };
    let value = karmem_format::value::decode(&layout, root, &bytes, &limits)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("`{name}` is not a valid `{}` message", opts.ty))?;
    let mut text = wave::print(&value).map_err(|e| anyhow!("{e}")).context("failed to print the value as WAVE")?;
    text.push('\n');
    super::write_output(&opts.output, text.as_bytes())
}

pub fn encode(opts: EncodeOpts) -> Result<()> {
    if super::is_stdio(&opts.schema) && opts.value == "-" {
        return Err(anyhow!("the schema and the value cannot both be read from stdin (`-`)"));
    }
    let (layout, root) = root_type(&opts.schema, &opts.ty)?;
    let text = if opts.value == "-" { super::read_input_text(std::path::Path::new("-"))? } else { opts.value.clone() };
    let ty = ValueType::new(layout.clone(), root);
    let value = wave::parse(&ty, text.trim())
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("the value is not a WAVE `{}`", opts.ty))?;
    let message = karmem_format::value::encode(&layout, root, &value)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("failed to encode the `{}` value", opts.ty))?;
    super::write_output(&opts.output, &message)
}

/// The schema's layout and the id of its type `name`.
fn root_type(schema: &std::path::Path, name: &str) -> Result<(Arc<Layout>, TypeId)> {
    let schema_name = super::display_name(schema);
    let schema = karmem_bridge::load_schema(schema)?;
    let layout = Layout::new(&schema).with_context(|| format!("failed to lay out `{schema_name}`"))?;
    let Some(root) = layout.named(name) else {
        let mut known: Vec<&str> = layout.named_items().into_iter().map(|(n, _)| n).collect();
        known.sort_unstable();
        return Err(anyhow!("`{schema_name}` has no type `{name}` (its types: {})", known.join(", ")));
    };
    Ok((Arc::new(layout), root))
}
