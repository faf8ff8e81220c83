//! WASI does not shape names (docs/IDL.md, "Names"), and the Karmem
//! boundary (`import_boundary`) is the full mapping without WASI.

use anyhow::{Context, Result, ensure};
use karmem_wit_import::{Imported, import_boundary, import_world, load_wit_text};

/// `types` and `host` of `demo:app`, and a world with or without WASI
/// interfaces whose names would clash with them (`wasi:filesystem/types`,
/// whose `error-code` meets `demo:app/types`'s), one of whose types `host`
/// uses.
fn world(with_wasi: bool) -> String {
    let wasi_imports = if with_wasi { "import wasi:filesystem/types@0.2.0;\n    import wasi:cli/exit@0.2.0;" } else { "" };
    format!(
        r#"package demo:app@1.0.0;

interface types {{
    enum error-code {{ bad, worse }}
    record pair {{ a: u32, b: tuple<u8, string> }}
    echo: func(p: pair) -> result<pair, error-code>;
}}

interface host {{
    use wasi:clocks/wall-clock@0.2.0.{{datetime}};
    now: func() -> datetime;
}}

world app {{
    {wasi_imports}
    import host;
    export types;
}}

package wasi:clocks@0.2.0 {{
    interface wall-clock {{
        record datetime {{ seconds: u64, nanoseconds: u32 }}
        now: func() -> datetime;
    }}
}}

package wasi:filesystem@0.2.0 {{
    interface types {{
        enum error-code {{ access, busy }}
        resource descriptor {{
            get-type: func() -> result<u8, error-code>;
        }}
    }}
}}

package wasi:cli@0.2.0 {{
    interface exit {{
        exit: func(status: result);
    }}
}}
"#
    )
}

fn map(with_wasi: bool, boundary: bool) -> Result<Imported> {
    let loaded = load_wit_text("app.wit", &world(with_wasi), Some("app"))?;
    let imported =
        if boundary { import_boundary(&loaded.resolve, loaded.world)? } else { import_world(&loaded.resolve, loaded.world)? };
    // whatever comes out must resolve
    karmem_idl::load(&karmem_idl::print(&imported.file), "app.km").map_err(|d| anyhow::anyhow!("{d}"))?;
    Ok(imported)
}

fn text(imported: &Imported) -> String {
    karmem_idl::print(&imported.file)
}

#[test]
fn wasi_interfaces_do_not_change_other_names() -> Result<()> {
    let without = map(false, false)?;
    let with = map(true, false)?;
    // `wasi:filesystem/types` is mapped, under names left over
    let full = text(&with);
    ensure!(full.contains("interface filesystem_types"), "{full}");
    ensure!(full.contains("interface exit"), "{full}");
    // and nothing else moved: every item of the world without WASI is the same
    let plain = text(&without);
    for item in plain.split("\n\n").skip(1) {
        ensure!(full.contains(item), "`{item}` changed with WASI in the world:\n{full}");
    }
    ensure!(plain.contains("interface types ") && plain.contains("enum error_code"), "{plain}");
    ensure!(plain.contains("struct datetime"), "{plain}");
    Ok(())
}

#[test]
fn the_boundary_leaves_wasi_out_but_keeps_the_wasi_types_it_uses() -> Result<()> {
    let boundary = map(true, true)?;
    let without = map(false, true)?;
    let out = text(&boundary);
    ensure!(out == text(&without), "the boundary depends on WASI:\n{out}\n---\n{}", text(&without));
    ensure!(!out.contains("wit: import wasi:"), "a WASI interface crossed the boundary:\n{out}");
    ensure!(out.contains("struct datetime") && !out.contains("wall_clock"), "{out}");
    let names: Vec<&str> = boundary.interfaces.iter().map(|i| i.name.as_str()).collect();
    ensure!(names == ["host", "types"], "{names:?}");
    // the names are those of the full mapping
    let full = map(true, false)?;
    let full_names: Vec<&str> = full.interfaces.iter().map(|i| i.name.as_str()).collect();
    for name in &names {
        ensure!(full_names.contains(name), "`{name}` is not in {full_names:?}");
    }
    let package = boundary.file.package.as_ref().context("a package")?;
    ensure!(package.name == "demo:app" && package.version.as_deref() == Some("1.0.0"), "{package:?}");
    Ok(())
}
