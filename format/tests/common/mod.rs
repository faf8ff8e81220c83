//! Helpers shared by the integration tests: schemas from IDL text.

#![allow(dead_code)]

use std::sync::Arc;

use karmem_format::Layout;
use karmem_format::layout::TypeId;
use karmem_format::value::Value;
use karmem_format::wave::{ValueType, parse};

/// Parses and resolves IDL text and lays it out.
pub fn layout(source: &str) -> Arc<Layout> {
    let file = match karmem_idl::parse(source) {
        Ok(f) => f,
        Err(e) => panic!("schema does not parse: {e:?}\n{source}"),
    };
    let schema = match karmem_idl::resolve(file) {
        Ok(s) => s,
        Err(e) => panic!("schema does not resolve: {e:?}\n{source}"),
    };
    match Layout::new(&schema) {
        Ok(l) => Arc::new(l),
        Err(e) => panic!("{e}"),
    }
}

pub fn ty(layout: &Layout, name: &str) -> TypeId {
    match layout.named(name) {
        Some(t) => t,
        None => panic!("no type `{name}`"),
    }
}

/// Parses WAVE text as a value of `id`.
pub fn wave(layout: &Arc<Layout>, id: TypeId, text: &str) -> Value {
    match parse(&ValueType::new(layout.clone(), id), text) {
        Ok(v) => v,
        Err(e) => panic!("bad WAVE `{text}`: {e}"),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in bytes.chunks(16).enumerate() {
        if chunk.iter().all(|b| *b == 0) {
            continue;
        }
        out.push_str(&format!("{:02x}:", i * 16));
        for (j, b) in chunk.iter().enumerate() {
            if j % 4 == 0 {
                out.push(' ');
            }
            out.push_str(&format!("{b:02x}"));
        }
        out.push('\n');
    }
    out
}

pub mod random;
pub mod tools;
