//! The structure test: a WIT type goes to an IDL type, and the IDL type goes
//! back to its canonical ABI shape ([`AbiType`]) without losing anything.
//!
//! For every parameter, result and named type of every world in the corpus,
//! and of a few hundred generated WIT types:
//! - `AbiType::from_idl(idl type)` equals `AbiType::from_wit(wit type)`
//!   (same structure, same field, case and flag names, same resources);
//! - its size and alignment equal wit-parser's `SizeAlign` (wasm32);
//! - its flattening equals wit-parser's `push_flat`, and `flat_len_capped`
//!   counts it.

#![allow(
    clippy::indexing_slicing,
    reason = "test helpers: arena lookups with ids read out of the same `Resolve`, and a random pick below the table's length"
)]

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use karmem_idl::Schema;
use karmem_idl::ast::{Ident, Item, TypeKind, TypeRef};
use karmem_wit_import::{AbiType, FlatType, Imported, Overlay, import_path, import_world, load_wit_text};
use wit_parser::abi::{FlatTypes, WasmType};
use wit_parser::{Function, Resolve, SizeAlign, Type, TypeDefKind, WorldItem};

/// Checks one WIT type against its IDL counterpart.
fn check_type(imported: &Imported, schema: &Schema, sizes: &SizeAlign, wit: &Type, idl: &TypeRef, what: &str) -> Result<()> {
    let resolve = &imported.resolve;
    let names = |id| imported.type_names.get(&id).cloned().unwrap_or_else(|| format!("<unnamed {id:?}>"));
    let from_wit = AbiType::from_wit(resolve, wit, &names).with_context(|| format!("{what}: from WIT"))?;
    let from_idl = AbiType::from_idl(schema, idl).with_context(|| format!("{what}: from IDL"))?;
    if from_wit != from_idl {
        bail!("{what}: lost in the mapping\n  WIT: {from_wit:?}\n  IDL: {from_idl:?}");
    }
    let size = u32::try_from(sizes.size(wit).size_wasm32())?;
    let align = u32::try_from(sizes.align(wit).align_wasm32())?;
    if (from_idl.size(), from_idl.align()) != (size, align) {
        bail!(
            "{what}: size/align {}/{} but wit-parser says {size}/{align} for {from_idl:?}",
            from_idl.size(),
            from_idl.align()
        );
    }
    check_offsets(resolve, sizes, wit, &from_idl).with_context(|| format!("{what}: offsets"))?;
    let mut storage = vec![WasmType::I32; 4096];
    let mut flat = FlatTypes::new(&mut storage);
    if !resolve.push_flat(wit, &mut flat) {
        bail!("{what}: too many flat values for the test's buffer");
    }
    let expected: Vec<FlatType> = flat
        .to_vec()
        .into_iter()
        .map(|t| match t {
            WasmType::I32 | WasmType::Pointer | WasmType::Length => FlatType::I32,
            WasmType::I64 | WasmType::PointerOrI64 => FlatType::I64,
            WasmType::F32 => FlatType::F32,
            WasmType::F64 => FlatType::F64,
        })
        .collect();
    if from_idl.flatten() != expected {
        bail!("{what}: flattens to {:?}, wit-parser says {expected:?}", from_idl.flatten());
    }
    for cap in [0, 1, 16, usize::MAX - 1] {
        let counted = from_idl.flat_len_capped(cap);
        if counted != expected.len().min(cap + 1) {
            bail!("{what}: flat_len_capped({cap}) is {counted}, but it flattens to {} values", expected.len());
        }
    }
    Ok(())
}

/// Field offsets of records and tuples, and payload offsets of variant-like
/// types, against wit-parser's `SizeAlign::field_offsets` / `payload_offset`.
fn check_offsets(resolve: &Resolve, sizes: &SizeAlign, wit: &Type, shape: &AbiType) -> Result<()> {
    let mut ty = *wit;
    while let Type::Id(id) = ty {
        match &resolve.types[id].kind {
            TypeDefKind::Type(inner) => ty = *inner,
            _ => break,
        }
    }
    let Type::Id(id) = ty else { return Ok(()) };
    let to_u32 = |size: wit_parser::ArchitectureSize| u32::try_from(size.size_wasm32());
    match &resolve.types[id].kind {
        TypeDefKind::Record(r) => {
            let expected: Vec<u32> =
                sizes.field_offsets(r.fields.iter().map(|f| &f.ty)).into_iter().map(|(o, _)| to_u32(o)).collect::<Result<_, _>>()?;
            if shape.field_offsets() != expected {
                bail!("record field offsets {:?}, wit-parser says {expected:?}", shape.field_offsets());
            }
        }
        TypeDefKind::Tuple(t) => {
            let expected: Vec<u32> =
                sizes.field_offsets(t.types.iter()).into_iter().map(|(o, _)| to_u32(o)).collect::<Result<_, _>>()?;
            if shape.field_offsets() != expected {
                bail!("tuple field offsets {:?}, wit-parser says {expected:?}", shape.field_offsets());
            }
        }
        TypeDefKind::Variant(v) => {
            let expected = to_u32(sizes.payload_offset(v.tag(), v.cases.iter().map(|c| c.ty.as_ref())))?;
            if shape.payload_offset() != expected {
                bail!("variant payload offset {}, wit-parser says {expected}", shape.payload_offset());
            }
        }
        TypeDefKind::Option(t) => {
            let expected = to_u32(sizes.payload_offset(wit_parser::Int::U8, [Some(t)]))?;
            if shape.payload_offset() != expected {
                bail!("option payload offset {}, wit-parser says {expected}", shape.payload_offset());
            }
        }
        TypeDefKind::Result(r) => {
            let expected = to_u32(sizes.payload_offset(wit_parser::Int::U8, [r.ok.as_ref(), r.err.as_ref()]))?;
            if shape.payload_offset() != expected {
                bail!("result payload offset {}, wit-parser says {expected}", shape.payload_offset());
            }
        }
        _ => {}
    }
    Ok(())
}

/// The WIT functions behind each output interface, in file order (the order
/// `convert` emits them: world imports, world-level imports, exports, world-level exports).
fn functions_per_interface(resolve: &Resolve, imported: &Imported) -> Result<Vec<Vec<Function>>> {
    let world_id = resolve
        .worlds
        .iter()
        .find(|(_, w)| Some(format!("wit: world {}", world_key(resolve, w))) == first_doc(imported))
        .map(|(id, _)| id)
        .ok_or_else(|| anyhow!("cannot find the imported world"))?;
    let world = &resolve.worlds[world_id];
    let mut out = Vec::new();
    for items in [&world.imports, &world.exports] {
        let mut world_functions = Vec::new();
        for item in items.values() {
            match item {
                WorldItem::Interface { id, .. } => {
                    out.push(resolve.interfaces[*id].functions.values().cloned().collect());
                }
                WorldItem::Function(f) => world_functions.push(f.clone()),
                WorldItem::Type { .. } => {}
            }
        }
        if !world_functions.is_empty() {
            out.push(world_functions);
        }
    }
    Ok(out)
}

fn world_key(resolve: &Resolve, world: &wit_parser::World) -> String {
    match world.package {
        Some(pkg) => resolve.id_of_name(pkg, &world.name),
        None => world.name.clone(),
    }
}

fn first_doc(imported: &Imported) -> Option<String> {
    imported.file.package.as_ref()?.docs.0.first().cloned()
}

/// Checks every function signature and every named type of an imported world.
fn check_world(imported: &Imported, label: &str) -> Result<usize> {
    let schema = karmem_idl::resolve(imported.file.clone())
        .map_err(|errors| anyhow!("{label}: the importer's file does not resolve: {errors:?}"))?;
    let resolve = &imported.resolve;
    let mut sizes = SizeAlign::default();
    sizes.fill(resolve);
    let mut checked = 0;

    let per_interface = functions_per_interface(resolve, imported)?;
    if per_interface.len() != imported.interfaces.len() {
        bail!("{label}: {} WIT interfaces but {} IDL interfaces", per_interface.len(), imported.interfaces.len());
    }
    for (functions, origin) in per_interface.iter().zip(&imported.interfaces) {
        let Some(Item::Interface(iface)) = schema.get(&origin.name) else {
            bail!("{label}: interface `{}` missing", origin.name);
        };
        let origin_names: Vec<&str> = origin.functions.iter().map(|f| f.wit_name.as_str()).collect();
        let wit_names: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
        if origin_names != wit_names {
            bail!("{label}: `{}` reports functions {origin_names:?}, WIT has {wit_names:?}", origin.name);
        }
        let idl_functions: Vec<_> = iface.functions().collect();
        let idl_names: Vec<&str> = idl_functions.iter().map(|f| f.name.name.as_str()).collect();
        let reported: Vec<&str> = origin.functions.iter().map(|f| f.name.as_str()).collect();
        if idl_names != reported {
            bail!("{label}: `{}` reports names {reported:?}, the file has {idl_names:?}", origin.name);
        }
        if idl_functions.len() != functions.len() {
            bail!("{label}: `{}` has {} functions, WIT has {}", origin.name, idl_functions.len(), functions.len());
        }
        for (wit, idl) in functions.iter().zip(idl_functions) {
            if wit.params.len() != idl.params.len() || usize::from(wit.result.is_some()) != idl.results.len() {
                bail!("{label}: `{}` has a different arity than `{}`", idl.name.name, wit.name);
            }
            for (p, q) in wit.params.iter().zip(&idl.params) {
                let what = format!("{label}: parameter `{}` of `{}`", p.name, wit.name);
                check_type(imported, &schema, &sizes, &p.ty, &q.ty, &what)?;
                checked += 1;
            }
            if let (Some(r), Some(q)) = (&wit.result, idl.results.first()) {
                let what = format!("{label}: result of `{}`", wit.name);
                check_type(imported, &schema, &sizes, r, &q.ty, &what)?;
                checked += 1;
            }
        }
    }
    for (&id, name) in &imported.type_names {
        let kind = match resolve.types[id].kind {
            // A resource is not a value; its handles are checked where they are used.
            TypeDefKind::Resource => continue,
            _ => TypeKind::Named(Ident::new(name)),
        };
        let what = format!("{label}: type `{name}`");
        check_type(imported, &schema, &sizes, &Type::Id(id), &TypeRef::new(kind), &what)?;
        checked += 1;
    }
    Ok(checked)
}

#[test]
fn corpus_types_keep_their_canonical_abi_shape() -> Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/wit");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    let mut total = 0;
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let is_case = (path.is_dir() && name != "fail" && name != "sources")
            || name.ends_with(".wit")
            || name.ends_with(".wasm")
            || name.ends_with(".wat");
        if !is_case {
            continue;
        }
        let world = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.strip_prefix("// world:")).map(|w| w.trim().to_string()));
        let imported = import_path(&path, world.as_deref(), &Overlay::default())?;
        total += check_world(&imported, &name)?;
    }
    eprintln!("structure: {total} corpus types checked");
    assert!(total > 300, "only {total} types were checked");
    Ok(())
}

/// A small deterministic generator (xorshift) of WIT types.
struct Gen {
    state: u64,
    definitions: Vec<String>,
    counter: usize,
}

impl Gen {
    fn next(&mut self, below: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % below.max(1)
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}{}", self.counter)
    }

    fn ty(&mut self, depth: u32) -> String {
        const SCALARS: [&str; 13] =
            ["bool", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "f32", "f64", "char", "string"];
        let choice = if depth == 0 { 0 } else { self.next(13) };
        match choice {
            0..=3 => SCALARS[self.next(SCALARS.len() as u64) as usize].to_string(),
            4 => format!("list<{}>", self.ty(depth - 1)),
            5 => format!("list<{}, {}>", self.ty(depth - 1), 1 + self.next(4)),
            6 => format!("option<{}>", self.ty(depth - 1)),
            7 => match self.next(4) {
                0 => format!("result<{}, {}>", self.ty(depth - 1), self.ty(depth - 1)),
                1 => format!("result<{}>", self.ty(depth - 1)),
                2 => format!("result<_, {}>", self.ty(depth - 1)),
                _ => "result".to_string(),
            },
            8 => {
                let n = 1 + self.next(3);
                let parts: Vec<String> = (0..n).map(|_| self.ty(depth - 1)).collect();
                format!("tuple<{}>", parts.join(", "))
            }
            9 => {
                let name = self.fresh("rec");
                let n = 1 + self.next(4);
                let fields: Vec<String> = (0..n).map(|i| format!("field{i}: {}", self.ty(depth - 1))).collect();
                self.definitions.push(format!("record {name} {{ {} }}", fields.join(", ")));
                name
            }
            10 => {
                let name = self.fresh("var");
                let n = 1 + self.next(5);
                let cases: Vec<String> = (0..n)
                    .map(|i| if self.next(3) == 0 { format!("case{i}") } else { format!("case{i}({})", self.ty(depth - 1)) })
                    .collect();
                self.definitions.push(format!("variant {name} {{ {} }}", cases.join(", ")));
                name
            }
            11 => {
                const KEYS: [&str; 11] = ["bool", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "char", "string"];
                let key = KEYS[self.next(KEYS.len() as u64) as usize];
                format!("map<{key}, {}>", self.ty(depth - 1))
            }
            _ => {
                let name = self.fresh("set");
                let n = 1 + self.next(70);
                let items: Vec<String> = (0..n).map(|i| format!("item{i}")).collect();
                if self.next(2) == 0 {
                    self.definitions.push(format!("flags {name} {{ {} }}", items.join(", ")));
                } else {
                    self.definitions.push(format!("enum {name} {{ {} }}", items.join(", ")));
                }
                name
            }
        }
    }
}

#[test]
fn generated_types_keep_their_canonical_abi_shape() -> Result<()> {
    let mut generator = Gen { state: 0x9e37_79b9_7f4a_7c15, definitions: Vec::new(), counter: 0 };
    let mut functions = Vec::new();
    for i in 0..300 {
        let param = generator.ty(4);
        let result = generator.ty(3);
        functions.push(format!("    fn{i}: func(x: {param}) -> {result};"));
    }
    let definitions: Vec<String> = generator.definitions.iter().map(|d| format!("    {d}")).collect();
    let wit = format!(
        "package test:generated;\n\ninterface generated {{\n    resource res;\n{}\n{}\n    own-it: func(r: res, b: borrow<res>) -> option<res>;\n}}\n\nworld generated-world {{\n    export generated;\n}}\n",
        definitions.join("\n"),
        functions.join("\n"),
    );
    let loaded = load_wit_text("generated.wit", &wit, None)?;
    let imported = import_world(&loaded.resolve, loaded.world)?;
    let printed = karmem_idl::print(&imported.file);
    karmem_idl::load(&printed, "generated.km").map_err(|d| anyhow!("{d}"))?;
    let checked = check_world(&imported, "generated")?;
    eprintln!("structure: {checked} generated types checked");
    assert!(checked >= 600, "only {checked} types were checked");
    Ok(())
}
