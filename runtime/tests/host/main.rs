//! Integration tests of `karmem-runtime` against hand-written WAT core
//! modules (no Karmem ABI yet): shared memories, containment, the module
//! cache and zero-copy fanout.

mod bulk;
mod cache;
mod common;
mod containment;
mod fanout;
mod link;
mod shared;
