//! A resolved schema: a [`File`] whose names all refer to something, whose tags
//! fit their widths and whose attributes sit on types that accept them.
//!
//! Owns: name lookup over a checked file. Consumers (`karmem-format`'s layout
//! engine, the code generator, the adapters) take a `&Schema` and may assume
//! every invariant the resolver checks.

use std::collections::HashMap;

use crate::ast::{File, Item, TypeKind, TypeRef};

/// A checked file plus an index of its items by name.
#[derive(Debug, Clone)]
pub struct Schema {
    file: File,
    by_name: HashMap<String, usize>,
}

impl Schema {
    /// Builds the index without checking anything. Only `resolve` calls this.
    pub(crate) fn new_unchecked(file: File) -> Schema {
        let by_name = file
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| (item.name().name.clone(), i))
            .collect();
        Schema { file, by_name }
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn into_file(self) -> File {
        self.file
    }

    pub fn items(&self) -> &[Item] {
        &self.file.items
    }

    /// The item declared under `name`.
    pub fn get(&self, name: &str) -> Option<&Item> {
        self.by_name.get(name).and_then(|&i| self.file.items.get(i))
    }

    /// The item a `TypeKind::Named` or handle refers to. Resolution guarantees it exists.
    pub fn lookup(&self, ty: &TypeRef) -> Option<&Item> {
        match &ty.kind {
            TypeKind::Named(id) | TypeKind::Handle(_, id) => self.get(&id.name),
            _ => None,
        }
    }
}
