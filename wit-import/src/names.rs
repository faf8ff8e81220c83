//! Names: WIT kebab-case to KarmemIDL snake_case, keyword escaping, and the
//! allocator that gives every item of one output file a unique name.
//!
//! Owns: the naming scheme documented in `docs/IDL.md` ("From WIT", "Names").
//! Every named thing offers a list of candidates, shortest first (`error`,
//! `streams_error`, `io_streams_error`, `wasi_io_streams_error`, then the same
//! with the package version). All things start at their first candidate; every
//! group of things that share a name moves on to its next candidate together,
//! until no name is shared or a group has no candidate left. What still
//! collides after that gets a numeric suffix (`_2`, `_3`, ...) in declaration
//! order. The result depends only on the world, never on hash order.
//!
//! Does not own: which things need names (`convert`).

use std::collections::{BTreeMap, HashSet};

/// `kebab-case` to `snake_case`. WIT identifiers never contain `_`, so this is
/// injective on them.
pub fn snake(kebab: &str) -> String {
    kebab.replace('-', "_")
}

/// The form a WIT field, case, flag or parameter name takes in KarmemIDL.
/// KarmemIDL keywords are contextual, so these need no escaping.
pub fn ident(kebab: &str) -> String {
    snake(kebab)
}

/// An item name that is a reserved type word (`u8`, `option`, ...) gets a
/// trailing `_`, so that it cannot be read as the built-in type.
pub fn escape(name: String) -> String {
    if karmem_idl::parser::is_reserved_type_word(&name) { name + "_" } else { name }
}

/// A package version as a name part: `0.2.6` -> `v0_2_6`.
pub fn version_part(version: &str) -> String {
    let mut out = String::from("v");
    out.extend(version.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }));
    out
}

/// Picks one name per entry from its candidates (shortest first), so that no
/// two entries and no name in `taken` share a name. Returns names in input order.
pub fn allocate(candidates: &[Vec<String>], taken: &HashSet<String>) -> Vec<String> {
    let mut level = vec![0usize; candidates.len()];
    let current = |level: &[usize], i: usize| -> String {
        candidates
            .get(i)
            .and_then(|c| c.get(level.get(i).copied().unwrap_or(0)).or_else(|| c.last()))
            .cloned()
            .unwrap_or_default()
    };
    loop {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for i in 0..candidates.len() {
            groups.entry(current(&level, i)).or_default().push(i);
        }
        let mut moved = false;
        for (name, members) in &groups {
            if members.len() < 2 && !taken.contains(name) {
                continue;
            }
            for &i in members {
                let available = candidates.get(i).map_or(0, Vec::len);
                if let Some(l) = level.get_mut(i)
                    && *l + 1 < available
                {
                    *l += 1;
                    moved = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    let mut used = taken.clone();
    let mut out = Vec::with_capacity(candidates.len());
    for i in 0..candidates.len() {
        let name = unique(&current(&level, i), &used);
        used.insert(name.clone());
        out.push(name);
    }
    out
}

/// `base`, or `base_2`, `base_3`, ... whichever is first not in `used`.
pub fn unique(base: &str, used: &HashSet<String>) -> String {
    if !used.contains(base) {
        return base.to_string();
    }
    (2u64..)
        .map(|n| format!("{base}_{n}"))
        .find(|name| !used.contains(name))
        .unwrap_or_else(|| base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(list: &[&[&str]]) -> Vec<Vec<String>> {
        list.iter().map(|c| c.iter().map(|s| s.to_string()).collect()).collect()
    }

    #[test]
    fn distinct_names_stay_short() {
        let names = allocate(&cands(&[&["a", "x_a"], &["b", "x_b"]]), &HashSet::new());
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn colliding_names_qualify_together() {
        let names = allocate(
            &cands(&[&["error", "io_error"], &["error", "fs_error"], &["other"]]),
            &HashSet::new(),
        );
        assert_eq!(names, ["io_error", "fs_error", "other"]);
    }

    #[test]
    fn exhausted_candidates_get_suffixes() {
        let names = allocate(&cands(&[&["a"], &["a"], &["a"]]), &HashSet::new());
        assert_eq!(names, ["a", "a_2", "a_3"]);
    }

    #[test]
    fn taken_names_are_avoided() {
        let taken: HashSet<String> = ["a".to_string()].into();
        let names = allocate(&cands(&[&["a", "q_a"]]), &taken);
        assert_eq!(names, ["q_a"]);
    }

    #[test]
    fn keywords_are_escaped() {
        assert_eq!(escape("u8".to_string()), "u8_");
        assert_eq!(escape("option".to_string()), "option_");
        assert_eq!(ident("read-via-stream"), "read_via_stream");
        assert_eq!(version_part("0.2.0-rc.1"), "v0_2_0_rc_1");
    }
}
