//! WIT `map<K, V>` maps to the KarmemIDL map of the mapped key and value,
//! and back to the canonical ABI's shape of a map, `list<tuple<K, V>>`.

use anyhow::{Context as _, Result, bail};
use karmem_idl::ast::{Item, TypeKind};
use karmem_wit_import::{AbiType, import_world, load_wit_text};

const WIT: &str = "package test:maps;
interface api {
    record settings { counts: map<string, u32>, groups: map<u32, list<string>> }
    update: func(s: settings, extra: map<string, u32>) -> map<u32, list<string>>;
}
world maps { export api; }
";

#[test]
fn maps_become_idl_maps_with_the_canonical_shape_of_a_list_of_pairs() -> Result<()> {
    let loaded = load_wit_text("maps.wit", WIT, None)?;
    let imported = import_world(&loaded.resolve, loaded.world)?;
    let printed = karmem_idl::print(&imported.file);
    let schema = karmem_idl::load(&printed, "maps.km").map_err(|d| anyhow::anyhow!("{d}"))?;
    assert!(
        printed.contains("counts: map<[]u8 #string, u32>;") && printed.contains("groups: map<u32, []([]u8 #string)>;"),
        "{printed}"
    );
    assert!(
        printed.contains("update: fn(s: settings, extra: map<[]u8 #string, u32>) (ret: map<u32, []([]u8 #string)>);"),
        "{printed}"
    );
    let Some(Item::Struct(settings)) = schema.get("settings") else { bail!("no struct `settings`") };
    let counts = &settings.fields.first().context("no field")?.ty;
    let TypeKind::Map { key, value } = &counts.kind else { bail!("`counts` is not a map: {counts:?}") };
    assert_eq!(AbiType::from_idl(&schema, key)?, AbiType::String);
    assert_eq!(AbiType::from_idl(&schema, value)?, AbiType::U32);
    // The canonical ABI passes a map as `list<tuple<k, v>>`: (ptr, len), 8-byte
    // elements of a string and a u32 laid out as a tuple.
    let shape = AbiType::from_idl(&schema, counts)?;
    assert_eq!(shape, AbiType::List(Box::new(AbiType::Tuple(vec![AbiType::String, AbiType::U32]))));
    assert_eq!((shape.size(), shape.align(), shape.flatten().len()), (8, 4, 2));
    let groups = &settings.fields.get(1).context("no field")?.ty;
    assert_eq!(
        AbiType::from_idl(&schema, groups)?,
        AbiType::List(Box::new(AbiType::Tuple(vec![AbiType::U32, AbiType::List(Box::new(AbiType::String))])))
    );
    Ok(())
}
