//! Where each memory goes in the one memory: the partition layout.
//!
//! Owns: the policy (identity partition at address 0, a scratch page for
//! the preview1 wrappers, fixed quotas for the small partitions, the open-
//! ended one last) and its checks. The plan is data: [`crate::run`] consumes
//! it, `inspect` prints it.
//!
//! Why this shape: only the last partition can grow without bound, since it
//! ends where the physical memory ends; the engine's own bounds check is
//! then exactly the partition's, so its accesses cost nothing extra
//! (`rewrite.rs`). Every other partition has a quota it can grow to and is
//! checked in code. The instance that needs memory the most should be last:
//! the heuristic takes the memory with the largest initial size.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result, bail, ensure};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef};

use crate::{MAX_PAGES, PAGE};

/// Quotas the user asked for, by owner name, in bytes.
pub type Quotas = BTreeMap<String, u64>;

/// Pages a partition with a quota may grow to by default (64 MiB).
pub const DEFAULT_QUOTA_PAGES: u32 = 1024;

/// One memory of the input, placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Index of the memory in the input module.
    pub memory: u32,
    /// Who owns it (an instance location, or the Karmem edge).
    pub owner: String,
    /// First page of the partition in the one memory.
    pub base_pages: u32,
    /// The memory's initial size, in pages.
    pub initial_pages: u32,
    /// Pages it may grow to; `None` for the open-ended last partition,
    /// which grows until the memory's own maximum or 4 GiB.
    pub quota_pages: Option<u32>,
    /// The memory's declared maximum, in pages.
    pub maximum_pages: Option<u32>,
}

impl Partition {
    /// Base address in bytes.
    pub fn base(&self) -> u64 {
        u64::from(self.base_pages) * PAGE
    }
}

/// Every memory of the input, placed; indexed by input memory index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub partitions: Vec<Partition>,
    /// The memory at address 0 (the one hosts address directly: the
    /// Karmem edge memory, or the memory exported as `memory`).
    pub identity: u32,
    /// The page the preview1 wrappers use for translated iovec arrays.
    pub scratch_page: u32,
    /// The input memory placed last.
    pub last: u32,
}

impl Layout {
    /// The partition of input memory `memory`.
    pub fn partition(&self, memory: u32) -> Option<&Partition> {
        self.partitions.get(memory as usize)
    }

    /// The one memory's initial size in pages.
    pub fn initial_pages(&self) -> Result<u32> {
        let last = self.partition(self.last).context("the layout has no last partition")?;
        Ok(last.base_pages + last.initial_pages)
    }

    /// The one memory's maximum in pages, if bounded below 4 GiB.
    pub fn maximum_pages(&self) -> Result<Option<u32>> {
        let last = self.partition(self.last).context("the layout has no last partition")?;
        Ok(last.maximum_pages.map(|max| last.base_pages + max))
    }
}

impl fmt::Display for Layout {
    /// One line per partition, in address order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ordered: Vec<&Partition> = self.partitions.iter().collect();
        ordered.sort_by_key(|p| p.base_pages);
        for p in ordered {
            let size = |pages: u32| format_size(u64::from(pages) * PAGE);
            let quota = match p.quota_pages {
                Some(q) => format!("quota {}", size(q)),
                None => "open-ended".to_string(),
            };
            writeln!(
                f,
                "memory {} at {:#010x}: initial {}, {quota}  `{}`",
                p.memory,
                p.base(),
                size(p.initial_pages),
                p.owner
            )?;
            if p.memory == self.identity {
                writeln!(f, "scratch page at {:#010x} (preview1 wrappers)", u64::from(self.scratch_page) * PAGE)?;
            }
        }
        Ok(())
    }
}

fn format_size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// A memory type as the layout needs it.
#[derive(Debug, Clone, Copy)]
struct MemoryShape {
    initial: u64,
    maximum: Option<u64>,
}

/// The memories of `module` (imported memories are refused: lowered
/// modules define theirs).
fn memories(module: &[u8]) -> Result<Vec<MemoryShape>> {
    let mut out = Vec::new();
    for payload in Parser::new(0).parse_all(module) {
        match payload? {
            Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    let import = import?;
                    if matches!(import.ty, TypeRef::Memory(_)) {
                        bail!("the module imports memory `{}#{}`; only defined memories can be partitioned", import.module, import.name);
                    }
                }
            }
            Payload::MemorySection(section) => {
                for memory in section {
                    let memory = memory?;
                    ensure!(!memory.memory64, "memory {} is a 64-bit memory; only 32-bit memories can be partitioned", out.len());
                    ensure!(!memory.shared, "memory {} is shared; shared memories cannot be partitioned", out.len());
                    out.push(MemoryShape { initial: memory.initial, maximum: memory.maximum });
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// How many memories `module` defines or imports.
pub fn memory_count(module: &[u8]) -> Result<u32> {
    let mut count = 0;
    for payload in Parser::new(0).parse_all(module) {
        match payload? {
            Payload::ImportSection(section) => {
                for import in section.into_imports() {
                    if matches!(import?.ty, TypeRef::Memory(_)) {
                        count += 1;
                    }
                }
            }
            Payload::MemorySection(section) => count += section.count(),
            _ => {}
        }
    }
    Ok(count)
}

/// The memory `module` exports as `name`.
pub fn exported_memory(module: &[u8], name: &str) -> Result<Option<u32>> {
    for payload in Parser::new(0).parse_all(module) {
        if let Payload::ExportSection(section) = payload? {
            for export in section {
                let export = export?;
                if export.kind == ExternalKind::Memory && export.name == name {
                    return Ok(Some(export.index));
                }
            }
        }
    }
    Ok(None)
}

/// Lays out the memories of `module`. `owners` names each memory (by
/// index); `identity` is the memory placed at address 0; `quotas` overrides
/// the default quota of the named owners (bytes, rounded up to pages).
pub fn plan(module: &[u8], owners: &[String], identity: u32, quotas: &Quotas) -> Result<Layout> {
    let shapes = memories(module)?;
    ensure!(shapes.len() >= 2, "the module has {} memory; there is nothing to partition", shapes.len());
    ensure!(
        owners.len() == shapes.len(),
        "{} memories but {} owners were named (a bug in the caller)",
        shapes.len(),
        owners.len()
    );
    ensure!((identity as usize) < shapes.len(), "identity memory {identity} does not exist");
    for name in quotas.keys() {
        ensure!(
            owners.iter().any(|o| o == name),
            "`--memory-quota {name}=...` names no memory owner; the owners are {}",
            owners.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
        );
    }
    let quota_of = |index: usize, shape: &MemoryShape| -> Result<Option<u64>> {
        let owner = owners.get(index).context("owner")?;
        let asked = quotas.get(owner).map(|bytes| bytes.div_ceil(PAGE));
        if let Some(q) = asked {
            ensure!(
                q >= shape.initial,
                "the quota of `{owner}` ({} pages) is below its initial memory ({} pages)",
                q,
                shape.initial
            );
        }
        Ok(asked)
    };

    // The open-ended partition: the largest initial memory without a quota
    // of the user's (heuristic, see the module docs); else the largest.
    let mut candidates: Vec<(usize, &MemoryShape)> =
        shapes.iter().enumerate().filter(|(i, _)| *i as u32 != identity).collect();
    candidates.sort_by_key(|(i, s)| (std::cmp::Reverse(s.initial), *i));
    let unquoted = candidates
        .iter()
        .find(|(i, _)| owners.get(*i).is_some_and(|o| !quotas.contains_key(o)))
        .or(candidates.first())
        .map(|(i, _)| *i)
        .context("no memory to place last")?;

    let mut partitions: Vec<Option<Partition>> = vec![None; shapes.len()];
    let mut next_page: u64 = 0;
    let mut place = |index: usize, open: bool, next_page: &mut u64| -> Result<()> {
        let shape = shapes.get(index).context("memory")?;
        let owner = owners.get(index).context("owner")?.clone();
        let asked = quota_of(index, shape)?;
        let maximum = shape.maximum;
        let quota = if open {
            None
        } else {
            let q = asked.unwrap_or(u64::from(DEFAULT_QUOTA_PAGES)).max(shape.initial);
            Some(maximum.map_or(q, |m| q.min(m)))
        };
        // The last partition's maximum: its own, or the user's quota.
        let maximum = if open { match (maximum, asked) { (Some(m), Some(q)) => Some(m.min(q)), (m, q) => m.or(q) } } else { maximum };
        let span = quota.unwrap_or(shape.initial);
        ensure!(
            *next_page + span <= MAX_PAGES,
            "the memories do not fit in one 4 GiB memory: `{owner}` would start at page {} with {} pages; \
             lower the quotas (`--memory-quota`) or keep separate memories (`--multi-memory`)",
            *next_page,
            span
        );
        let slot = partitions.get_mut(index).context("memory")?;
        *slot = Some(Partition {
            memory: index as u32,
            owner,
            base_pages: *next_page as u32,
            initial_pages: shape.initial as u32,
            quota_pages: quota.map(|q| q as u32),
            maximum_pages: maximum.map(|m| m.min(MAX_PAGES - *next_page) as u32),
        });
        *next_page += span;
        Ok(())
    };
    place(identity as usize, false, &mut next_page)?;
    let scratch_page = next_page as u32;
    next_page += 1;
    for index in 0..shapes.len() {
        if index as u32 != identity && index != unquoted {
            place(index, false, &mut next_page)?;
        }
    }
    place(unquoted, true, &mut next_page)?;
    let partitions = partitions.into_iter().collect::<Option<Vec<_>>>().context("a memory was not placed")?;
    Ok(Layout { partitions, identity, scratch_page, last: unquoted as u32 })
}

/// Parses `SIZE` as `--memory-quota` takes it: bytes, or with a `K`, `M`
/// or `G` suffix (binary units), or `Ki`/`Mi`/`Gi`.
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().with_context(|| format!("`{text}` is not a size (e.g. `64M`)"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "Ki" | "KiB" | "k" => 1 << 10,
        "M" | "Mi" | "MiB" => 1 << 20,
        "G" | "Gi" | "GiB" => 1 << 30,
        other => bail!("`{other}` in `{text}` is not a size unit (K, M or G)"),
    };
    let bytes = number.checked_mul(scale).context("size too large")?;
    ensure!(bytes <= MAX_PAGES * PAGE, "`{text}` is larger than a 32-bit memory (4 GiB)");
    Ok(bytes)
}
