//! The overlay: what WIT cannot say (an interface's pattern, its shared
//! memories), given as CLI flags or as a small text file.
//!
//! Owns: parsing the flag forms `IFACE=PATTERN`,
//! `IFACE.MEMORY=import:ACCESS,export:ACCESS,PAGES` and
//! `IFACE.FUNCTION.PARAM=MEMORY` (place a parameter, or the result `ret`, in a
//! memory), parsing the overlay file (one directive per line: `pattern ...`,
//! `memory ...` or `place ...`; `#` starts a comment), and applying them to an
//! imported file. `IFACE` is the interface's IDL name or its WIT name, with or
//! without the version (`stdout`, `wasi:cli/stdout`, `wasi:cli/stdout@0.2.6`).
//!
//! Does not own: the defaults (direct pattern, no memories) — `convert` emits those.

use anyhow::{Context as _, Result, anyhow, bail};
use karmem_idl::ast::{Access, Ident, InterfaceDef, Item, Member, MemoryDef, Pattern, Span};

use crate::convert::Imported;

/// Pattern and memory overrides, applied in the order given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    pub patterns: Vec<PatternOverride>,
    pub memories: Vec<MemoryOverride>,
    pub placements: Vec<Placement>,
}

/// `IFACE.FUNCTION.PARAM=MEMORY`: the value must live in that interface memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub interface: String,
    pub function: String,
    /// A parameter name, or a result name (`ret`).
    pub param: String,
    pub memory: String,
}

/// `IFACE=PATTERN`
#[derive(Debug, Clone, PartialEq)]
pub struct PatternOverride {
    pub interface: String,
    pub pattern: Pattern,
}

/// `IFACE.NAME=import:ACCESS,export:ACCESS,PAGES`
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryOverride {
    pub interface: String,
    pub name: String,
    pub import: Access,
    pub export: Access,
    pub pages: u32,
}

impl Overlay {
    /// Parses the argument of `--pattern`.
    pub fn parse_pattern(arg: &str) -> Result<PatternOverride> {
        let (interface, pattern) = arg
            .split_once('=')
            .ok_or_else(|| anyhow!("expected `INTERFACE=PATTERN`, found `{arg}`"))?;
        let pattern = match pattern.trim() {
            "direct" => Pattern::Direct,
            "fanout" => Pattern::Fanout,
            "singleton" | "single" => Pattern::Singleton,
            "pool" => Pattern::Pool,
            other => bail!("unknown pattern `{other}`; expected `direct`, `fanout`, `singleton` or `pool`"),
        };
        Ok(PatternOverride { interface: nonempty(interface, "interface")?, pattern })
    }

    /// Parses the argument of `--memory`.
    pub fn parse_memory(arg: &str) -> Result<MemoryOverride> {
        let (target, spec) = arg
            .split_once('=')
            .ok_or_else(|| anyhow!("expected `INTERFACE.MEMORY=import:ACCESS,export:ACCESS,PAGES`, found `{arg}`"))?;
        // The interface part may itself contain dots (versions), so split at the last one.
        let (interface, name) = target
            .rsplit_once('.')
            .ok_or_else(|| anyhow!("expected `INTERFACE.MEMORY` before `=`, found `{target}`"))?;
        let parts: Vec<&str> = spec.split(',').map(str::trim).collect();
        let [import, export, pages] = parts.as_slice() else {
            bail!("expected `import:ACCESS,export:ACCESS,PAGES`, found `{spec}`");
        };
        let import = side_access(import, "import")?;
        let export = side_access(export, "export")?;
        let pages: u32 = pages
            .parse()
            .map_err(|_| anyhow!("expected a page count (64 KiB pages), found `{pages}`"))?;
        if pages == 0 {
            bail!("memory `{name}` needs at least one page");
        }
        Ok(MemoryOverride { interface: nonempty(interface, "interface")?, name: nonempty(name, "memory")?, import, export, pages })
    }

    /// Parses the argument of `--place`.
    pub fn parse_placement(arg: &str) -> Result<Placement> {
        let (target, memory) = arg
            .split_once('=')
            .ok_or_else(|| anyhow!("expected `INTERFACE.FUNCTION.PARAM=MEMORY`, found `{arg}`"))?;
        let (rest, param) = target
            .rsplit_once('.')
            .ok_or_else(|| anyhow!("expected `INTERFACE.FUNCTION.PARAM` before `=`, found `{target}`"))?;
        let (interface, function) = rest
            .rsplit_once('.')
            .ok_or_else(|| anyhow!("expected `INTERFACE.FUNCTION.PARAM` before `=`, found `{target}`"))?;
        Ok(Placement {
            interface: nonempty(interface, "interface")?,
            function: nonempty(function, "function")?,
            param: nonempty(param, "parameter")?,
            memory: nonempty(memory, "memory")?,
        })
    }

    /// Parses an overlay file.
    pub fn parse_file(text: &str) -> Result<Overlay> {
        let mut overlay = Overlay::default();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = line.split_once('#').map_or(line, |(before, _)| before).trim();
            if line.is_empty() {
                continue;
            }
            let (directive, arg) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let arg = arg.trim();
            match directive {
                "pattern" => overlay
                    .patterns
                    .push(Self::parse_pattern(arg).with_context(|| format!("overlay line {line_no}"))?),
                "memory" => overlay
                    .memories
                    .push(Self::parse_memory(arg).with_context(|| format!("overlay line {line_no}"))?),
                "place" => overlay
                    .placements
                    .push(Self::parse_placement(arg).with_context(|| format!("overlay line {line_no}"))?),
                other => bail!(
                    "overlay line {line_no}: unknown directive `{other}`; expected `pattern`, `memory` or `place`"
                ),
            }
        }
        Ok(overlay)
    }

    /// Whether it overrides nothing.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && self.memories.is_empty() && self.placements.is_empty()
    }

    /// Adds `other`'s overrides after this one's.
    pub fn extend(&mut self, other: Overlay) {
        self.patterns.extend(other.patterns);
        self.memories.extend(other.memories);
        self.placements.extend(other.placements);
    }

    /// Applies the overrides. Memories go before the functions, in the order given.
    pub fn apply(&self, imported: &mut Imported) -> Result<()> {
        for p in &self.patterns {
            let iface = find_interface(imported, &p.interface)?;
            iface.pattern = p.pattern;
        }
        let mut inserted: Vec<(String, usize)> = Vec::new();
        for m in &self.memories {
            let iface = find_interface(imported, &m.interface)?;
            let clash = iface.members.iter().any(|member| match member {
                Member::Memory(d) => d.name.name == m.name,
                Member::Function(f) => f.name.name == m.name,
            });
            if clash {
                bail!("interface `{}` already has a member named `{}`", iface.name.name, m.name);
            }
            let position = inserted.iter().filter(|(name, _)| *name == iface.name.name).count();
            inserted.push((iface.name.name.clone(), position));
            iface.members.insert(
                position,
                Member::Memory(MemoryDef {
                    name: Ident::new(&m.name),
                    import: m.import,
                    export: m.export,
                    pages: m.pages,
                    docs: Default::default(),
                    span: Span::DUMMY,
                }),
            );
        }
        for p in &self.placements {
            let iface = find_interface(imported, &p.interface)?;
            let iface_name = iface.name.name.clone();
            if !iface.memories().any(|m| m.name.name == p.memory) {
                bail!("interface `{iface_name}` has no memory `{}` to place `{}.{}` in", p.memory, p.function, p.param);
            }
            let function = iface
                .members
                .iter_mut()
                .find_map(|m| match m {
                    Member::Function(f) if f.name.name == p.function => Some(f),
                    _ => None,
                })
                .ok_or_else(|| anyhow!("interface `{iface_name}` has no function `{}`", p.function))?;
            let param = function
                .params
                .iter_mut()
                .chain(function.results.iter_mut())
                .find(|q| q.name.as_ref().is_some_and(|n| n.name == p.param))
                .ok_or_else(|| anyhow!("function `{iface_name}.{}` has no parameter or result `{}`", p.function, p.param))?;
            param.memory = Some(Ident::new(&p.memory));
        }
        Ok(())
    }
}

fn nonempty(s: &str, what: &str) -> Result<String> {
    let s = s.trim();
    if s.is_empty() { Err(anyhow!("the {what} name is empty")) } else { Ok(s.to_string()) }
}

fn side_access(part: &str, side: &str) -> Result<Access> {
    let (found_side, access) = part
        .split_once(':')
        .ok_or_else(|| anyhow!("expected `{side}:ACCESS`, found `{part}`"))?;
    if found_side.trim() != side {
        bail!("expected `{side}:ACCESS`, found `{part}`");
    }
    match access.trim() {
        "none" => Ok(Access::None),
        "read" => Ok(Access::Read),
        "write" => Ok(Access::Write),
        other => bail!("unknown access `{other}` for `{side}`; expected `none`, `read` or `write`"),
    }
}

/// The interface called `name` in the file, by IDL name or WIT name (with or without version).
fn find_interface<'a>(imported: &'a mut Imported, name: &str) -> Result<&'a mut InterfaceDef> {
    let matches_wit = |wit: &str| wit == name || wit.split_once('@').is_some_and(|(unversioned, _)| unversioned == name);
    let idl_name = imported
        .interfaces
        .iter()
        .find(|o| o.name == name)
        .or_else(|| imported.interfaces.iter().find(|o| matches_wit(&o.wit_name)))
        .map(|o| o.name.clone())
        .ok_or_else(|| {
            let known: Vec<&str> = imported.interfaces.iter().map(|o| o.name.as_str()).collect();
            anyhow!("the overlay names interface `{name}`, which the world does not have (it has: {})", known.join(", "))
        })?;
    imported
        .file
        .items
        .iter_mut()
        .find_map(|item| match item {
            Item::Interface(iface) if iface.name.name == idl_name => Some(iface),
            _ => None,
        })
        .ok_or_else(|| anyhow!("internal error: interface `{idl_name}` is missing from the file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_forms_parse() -> Result<()> {
        let p = Overlay::parse_pattern("updater=fanout")?;
        assert_eq!(p, PatternOverride { interface: "updater".into(), pattern: Pattern::Fanout });
        let m = Overlay::parse_memory("wasi:cli/stdout@0.2.6.shared=import:write,export:read,64")?;
        assert_eq!(m.interface, "wasi:cli/stdout@0.2.6");
        assert_eq!(m.name, "shared");
        assert_eq!((m.import, m.export, m.pages), (Access::Write, Access::Read, 64));
        Ok(())
    }

    #[test]
    fn bad_forms_are_refused() {
        assert!(Overlay::parse_pattern("x=sideways").is_err());
        assert!(Overlay::parse_memory("x.m=import:write,export:read").is_err());
        assert!(Overlay::parse_memory("x.m=export:write,import:read,1").is_err());
        assert!(Overlay::parse_memory("x.m=import:write,export:read,0").is_err());
        assert!(Overlay::parse_memory("xm=import:write,export:read,1").is_err());
        let err = Overlay::parse_file("pattern a=direct\nbogus x\n").err().map(|e| format!("{e:#}"));
        assert_eq!(
            err.as_deref(),
            Some("overlay line 2: unknown directive `bogus`; expected `pattern`, `memory` or `place`")
        );
        assert!(Overlay::parse_placement("a.f=m").is_err());
        let p = Overlay::parse_placement("wasi:x/y@1.0.0.f.arg=shared").ok();
        assert_eq!(p.map(|p| (p.interface, p.function, p.param)), Some(("wasi:x/y@1.0.0".into(), "f".into(), "arg".into())));
    }

    #[test]
    fn file_form_parses() -> Result<()> {
        let overlay = Overlay::parse_file(
            "# patterns\npattern a=fanout\n\nmemory a.shared=import:write,export:read,2 # trailing\n",
        )?;
        assert_eq!(overlay.patterns.len(), 1);
        assert_eq!(overlay.memories.len(), 1);
        Ok(())
    }
}
