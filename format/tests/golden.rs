//! The golden vectors of `docs/FORMAT.md`: every ```golden block is encoded
//! from its WAVE value and compared byte for byte, then decoded back.

#![cfg(feature = "schema")]
#![allow(
    clippy::unwrap_used, clippy::expect_used, clippy::panic,
    reason = "test code: a failed step fails the test"
)]

mod common;

use karmem_format::value::{decode, encode};
use karmem_format::{Limits, validate};

struct Golden {
    line: usize,
    km: String,
    ty: Option<String>,
    function: Option<(String, String, bool)>,
    wave: String,
    len: usize,
    bytes: Vec<(usize, Vec<u8>)>,
}

fn parse_blocks(doc: &str) -> Vec<Golden> {
    let mut out = Vec::new();
    let mut lines = doc.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        if line.trim() != "```golden" {
            continue;
        }
        let mut g = Golden {
            line: n + 1,
            km: String::new(),
            ty: None,
            function: None,
            wave: String::new(),
            len: 0,
            bytes: Vec::new(),
        };
        for (_, line) in lines.by_ref() {
            if line.trim() == "```" {
                break;
            }
            let (key, rest) = line.split_once(':').unwrap_or((line, ""));
            let rest = rest.trim();
            match key.trim() {
                "km" => {
                    g.km.push_str(rest);
                    g.km.push('\n');
                }
                "type" => g.ty = Some(rest.to_string()),
                "fn" => {
                    let mut parts = rest.split_whitespace();
                    let path = parts.next().unwrap_or_default();
                    let which = parts.next().unwrap_or("params");
                    let (iface, func) = path.split_once('.').unwrap_or((path, ""));
                    g.function = Some((iface.to_string(), func.to_string(), which == "params"));
                }
                "wave" => g.wave = rest.to_string(),
                "len" => g.len = rest.parse().unwrap_or(0),
                offset => {
                    let at = usize::from_str_radix(offset, 16).unwrap_or(usize::MAX);
                    let hex: String = rest.split_whitespace().collect();
                    let bytes = (0..hex.len() / 2)
                        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
                        .collect();
                    g.bytes.push((at, bytes));
                }
            }
        }
        out.push(g);
    }
    out
}

#[test]
fn format_md_golden_vectors() {
    let doc = include_str!("../../docs/FORMAT.md");
    let blocks = parse_blocks(doc);
    assert!(blocks.len() >= 7, "expected the golden blocks of FORMAT.md, found {}", blocks.len());
    let mut failures = Vec::new();
    for g in &blocks {
        let layout = common::layout(&g.km);
        let id = match (&g.ty, &g.function) {
            (Some(t), _) => common::ty(&layout, t),
            (None, Some((i, f, params))) => {
                let f = layout.function(i, f).expect("function in golden schema");
                if *params { f.params } else { f.results }
            }
            _ => panic!("golden block at line {} names no type", g.line),
        };
        let value = common::wave(&layout, id, &g.wave);
        let mut expected = vec![0u8; g.len];
        for (at, bytes) in &g.bytes {
            expected[*at..*at + bytes.len()].copy_from_slice(bytes);
        }
        let encoded = encode(&layout, id, &value).expect("encode");
        if encoded.as_slice() != expected.as_slice() {
            failures.push(format!(
                "FORMAT.md line {}: encoding differs\nexpected ({} bytes):\n{}got ({} bytes):\n{}",
                g.line,
                expected.len(),
                common::hex(&expected),
                encoded.len(),
                common::hex(&encoded)
            ));
            continue;
        }
        validate(&expected, &layout, id, &Limits::default()).expect("golden vector validates");
        let decoded = decode(&layout, id, &expected, &Limits::default()).expect("decode");
        assert!(decoded.bit_eq(&value), "line {}: decoded {decoded:?}, expected {value:?}", g.line);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
